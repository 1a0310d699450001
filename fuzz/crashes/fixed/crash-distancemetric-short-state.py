"""DistanceMetric pickle built by newObj then BUILD with (): DistanceMetric.__setstate__ segfaults."""
import pickle
import sys

from sklearn.metrics import DistanceMetric

m = DistanceMetric.get_metric("euclidean")
func, args = m.__reduce__()[:2]

class Short:
    def __reduce__(self):
        return (func, args, ())   # DistanceMetric.__setstate__ indexes state[0..2] unchecked

open(sys.argv[1], "wb").write(pickle.dumps(Short(), protocol=4))
