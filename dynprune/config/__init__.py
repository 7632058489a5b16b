"""The configuration layer: every parameter of a run, checked before anything runs; nothing here imports torch,
so a bad file is refused in a fraction of a second.

    schema.py   the dataclasses (Config, CompareConfig, ReportConfig): defaults, choices, help texts
    checks.py   types, ranges, plain names, the rules between parameters (build, validate)
    files.py    parameter files and profiles (resolve: defaults < file < profile < overrides)
    grid.py     seeds and grids: the runs of one file (runs_of), each in a folder of its own

What other layers use is named here.
"""
from __future__ import annotations

from dynprune.config.checks import (build, check_experiment_key, check_name, describe_type, unknown_key_error,
                                    validate)
from dynprune.config.files import (PROJECT, dumps, experiment_key, kind_of, params_file, params_root, parse_yaml,
                                   read_profile, read_yaml, resolve, resources, schema_for)
from dynprune.config.grid import (RunSpec, grid_points, label_without, point_folder, point_label, run_seeds, runs_of,
                                  value_text)
from dynprune.config.schema import (DESCRIPTIVE, FIELDS, NOT_IN_GRID, NOTEBOOKS, SAFE_NAME, SCHEMAS, CompareConfig,
                                    Config, ConfigError, ReportConfig, fields, hints)
