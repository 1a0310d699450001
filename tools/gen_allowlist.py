"""Regenerate the estimator section of safeload/_allowlist.py from the installed scikit-learn.

Run by a maintainer when upgrading scikit-learn; the output is reviewed and committed.
Only the estimator list is generated; every other entry is written by hand.
"""

from __future__ import annotations

import warnings

from sklearn.utils import all_estimators

warnings.filterwarnings("ignore")
names = sorted(f"{c.__module__}.{c.__qualname__}" for _, c in all_estimators())
print("_ESTIMATORS: tuple[str, ...] = (")
for n in names:
    print(f'    "{n}",')
print(")")
