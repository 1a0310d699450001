"""skops DecisionTree whose tree_ 'nodes' member is replaced by a 0-d int64 array: Tree.__setstate__ segfaults."""
import io
import json
import sys
import zipfile

import numpy as np
import skops.io as sio
from sklearn.tree import DecisionTreeClassifier

x = np.random.RandomState(0).normal(size=(40, 4))
blob = sio.dumps(DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, x[:, 0] > 0))
zin = zipfile.ZipFile(io.BytesIO(blob))
schema = json.loads(zin.read("schema.json"))
target = schema["content"]["content"]["tree_"]["content"]["content"]["nodes"]["file"]
bad = io.BytesIO()
np.save(bad, np.int64(2), allow_pickle=False)
out = io.BytesIO()
with zipfile.ZipFile(out, "w") as zout:
    for info in zin.infolist():
        zout.writestr(info.filename, bad.getvalue() if info.filename == target else zin.read(info))
open(sys.argv[1], "wb").write(out.getvalue())
