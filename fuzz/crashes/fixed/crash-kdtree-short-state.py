"""KDTree pickle whose 13-item BUILD state is cut to 12 items: BinaryTree.__setstate__ segfaults."""
import pickle
import sys

import numpy as np
from sklearn.neighbors import KDTree

tree = KDTree(np.random.RandomState(0).normal(size=(20, 3)))
func, args, state = tree.__reduce__()[:3]

class Short:
    def __reduce__(self):
        return (func, args, state[:12])   # drop the last state item (sample_weight)

open(sys.argv[1], "wb").write(pickle.dumps(Short(), protocol=4))
