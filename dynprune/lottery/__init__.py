"""The lottery-ticket procedures dynamic pruning is compared with: IMP with rewinding, and the winning-ticket check."""
