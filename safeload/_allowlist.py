"""The default allowlist, as reviewable data.

Every entry is an exact ``module.qualname`` with a kind and a one-line reason:

* ``NEW``   -- a class the pickle may only rebuild without running ``__init__``
  (NEWOBJ / ``copyreg._reconstructor`` / a ``newObj`` helper) and then hand state
  to ``__setstate__``; it may *not* be called with arguments by REDUCE.
* ``CALL``  -- may be called by REDUCE with attacker-chosen arguments: it only
  builds an in-memory value, does no I/O, imports nothing, evaluates no code and
  does not allocate more than its arguments hold (or it carries a ``guard`` that
  checks its arguments first, see ``_guards.py``).
* ``VALUE`` -- referenced as a value (a dtype, a score function, a ufunc); the
  loader never calls it.

Names under both ``numpy.core`` and ``numpy._core`` are listed because numpy 1.x
wrote the former and numpy 2.x writes the latter.  Regenerate the estimator
section with ``python tools/gen_allowlist.py`` when upgrading scikit-learn.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DEFAULT_ENTRIES", "Entry", "Kind"]


class Kind(enum.Enum):
    NEW = "new"
    CALL = "call"
    VALUE = "value"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Kind
    why: str
    guard: str | None = None
    user: bool = False


_ESTIMATORS: tuple[str, ...] = (
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.cluster._affinity_propagation.AffinityPropagation",
    "sklearn.cluster._agglomerative.AgglomerativeClustering",
    "sklearn.cluster._agglomerative.FeatureAgglomeration",
    "sklearn.cluster._bicluster.SpectralBiclustering",
    "sklearn.cluster._bicluster.SpectralCoclustering",
    "sklearn.cluster._birch.Birch",
    "sklearn.cluster._bisect_k_means.BisectingKMeans",
    "sklearn.cluster._dbscan.DBSCAN",
    "sklearn.cluster._hdbscan.hdbscan.HDBSCAN",
    "sklearn.cluster._kmeans.KMeans",
    "sklearn.cluster._kmeans.MiniBatchKMeans",
    "sklearn.cluster._mean_shift.MeanShift",
    "sklearn.cluster._optics.OPTICS",
    "sklearn.cluster._spectral.SpectralClustering",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.compose._target.TransformedTargetRegressor",
    "sklearn.covariance._elliptic_envelope.EllipticEnvelope",
    "sklearn.covariance._empirical_covariance.EmpiricalCovariance",
    "sklearn.covariance._graph_lasso.GraphicalLasso",
    "sklearn.covariance._graph_lasso.GraphicalLassoCV",
    "sklearn.covariance._robust_covariance.MinCovDet",
    "sklearn.covariance._shrunk_covariance.LedoitWolf",
    "sklearn.covariance._shrunk_covariance.OAS",
    "sklearn.covariance._shrunk_covariance.ShrunkCovariance",
    "sklearn.cross_decomposition._pls.CCA",
    "sklearn.cross_decomposition._pls.PLSCanonical",
    "sklearn.cross_decomposition._pls.PLSRegression",
    "sklearn.cross_decomposition._pls.PLSSVD",
    "sklearn.decomposition._dict_learning.DictionaryLearning",
    "sklearn.decomposition._dict_learning.MiniBatchDictionaryLearning",
    "sklearn.decomposition._dict_learning.SparseCoder",
    "sklearn.decomposition._factor_analysis.FactorAnalysis",
    "sklearn.decomposition._fastica.FastICA",
    "sklearn.decomposition._incremental_pca.IncrementalPCA",
    "sklearn.decomposition._kernel_pca.KernelPCA",
    "sklearn.decomposition._lda.LatentDirichletAllocation",
    "sklearn.decomposition._nmf.MiniBatchNMF",
    "sklearn.decomposition._nmf.NMF",
    "sklearn.decomposition._pca.PCA",
    "sklearn.decomposition._sparse_pca.MiniBatchSparsePCA",
    "sklearn.decomposition._sparse_pca.SparsePCA",
    "sklearn.decomposition._truncated_svd.TruncatedSVD",
    "sklearn.discriminant_analysis.LinearDiscriminantAnalysis",
    "sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis",
    "sklearn.dummy.DummyClassifier",
    "sklearn.dummy.DummyRegressor",
    "sklearn.ensemble._bagging.BaggingClassifier",
    "sklearn.ensemble._bagging.BaggingRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.RandomTreesEmbedding",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.ensemble._stacking.StackingClassifier",
    "sklearn.ensemble._stacking.StackingRegressor",
    "sklearn.ensemble._voting.VotingClassifier",
    "sklearn.ensemble._voting.VotingRegressor",
    "sklearn.ensemble._weight_boosting.AdaBoostClassifier",
    "sklearn.ensemble._weight_boosting.AdaBoostRegressor",
    "sklearn.feature_extraction._dict_vectorizer.DictVectorizer",
    "sklearn.feature_extraction._hash.FeatureHasher",
    "sklearn.feature_extraction.image.PatchExtractor",
    "sklearn.feature_extraction.text.CountVectorizer",
    "sklearn.feature_extraction.text.HashingVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_selection._from_model.SelectFromModel",
    "sklearn.feature_selection._rfe.RFE",
    "sklearn.feature_selection._rfe.RFECV",
    "sklearn.feature_selection._sequential.SequentialFeatureSelector",
    "sklearn.feature_selection._univariate_selection.GenericUnivariateSelect",
    "sklearn.feature_selection._univariate_selection.SelectFdr",
    "sklearn.feature_selection._univariate_selection.SelectFpr",
    "sklearn.feature_selection._univariate_selection.SelectFwe",
    "sklearn.feature_selection._univariate_selection.SelectKBest",
    "sklearn.feature_selection._univariate_selection.SelectPercentile",
    "sklearn.feature_selection._variance_threshold.VarianceThreshold",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.gaussian_process._gpc.GaussianProcessClassifier",
    "sklearn.gaussian_process._gpr.GaussianProcessRegressor",
    "sklearn.impute._base.MissingIndicator",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.impute._knn.KNNImputer",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.kernel_approximation.AdditiveChi2Sampler",
    "sklearn.kernel_approximation.Nystroem",
    "sklearn.kernel_approximation.PolynomialCountSketch",
    "sklearn.kernel_approximation.RBFSampler",
    "sklearn.kernel_approximation.SkewedChi2Sampler",
    "sklearn.kernel_ridge.KernelRidge",
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._bayes.ARDRegression",
    "sklearn.linear_model._bayes.BayesianRidge",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.linear_model._coordinate_descent.ElasticNetCV",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._coordinate_descent.LassoCV",
    "sklearn.linear_model._coordinate_descent.MultiTaskElasticNet",
    "sklearn.linear_model._coordinate_descent.MultiTaskElasticNetCV",
    "sklearn.linear_model._coordinate_descent.MultiTaskLasso",
    "sklearn.linear_model._coordinate_descent.MultiTaskLassoCV",
    "sklearn.linear_model._glm.glm.GammaRegressor",
    "sklearn.linear_model._glm.glm.PoissonRegressor",
    "sklearn.linear_model._glm.glm.TweedieRegressor",
    "sklearn.linear_model._huber.HuberRegressor",
    "sklearn.linear_model._least_angle.Lars",
    "sklearn.linear_model._least_angle.LarsCV",
    "sklearn.linear_model._least_angle.LassoLars",
    "sklearn.linear_model._least_angle.LassoLarsCV",
    "sklearn.linear_model._least_angle.LassoLarsIC",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._logistic.LogisticRegressionCV",
    "sklearn.linear_model._omp.OrthogonalMatchingPursuit",
    "sklearn.linear_model._omp.OrthogonalMatchingPursuitCV",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveClassifier",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveRegressor",
    "sklearn.linear_model._perceptron.Perceptron",
    "sklearn.linear_model._quantile.QuantileRegressor",
    "sklearn.linear_model._ransac.RANSACRegressor",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._ridge.RidgeCV",
    "sklearn.linear_model._ridge.RidgeClassifier",
    "sklearn.linear_model._ridge.RidgeClassifierCV",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDOneClassSVM",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor",
    "sklearn.linear_model._theil_sen.TheilSenRegressor",
    "sklearn.manifold._classical_mds.ClassicalMDS",
    "sklearn.manifold._isomap.Isomap",
    "sklearn.manifold._locally_linear.LocallyLinearEmbedding",
    "sklearn.manifold._mds.MDS",
    "sklearn.manifold._spectral_embedding.SpectralEmbedding",
    "sklearn.manifold._t_sne.TSNE",
    "sklearn.mixture._bayesian_mixture.BayesianGaussianMixture",
    "sklearn.mixture._gaussian_mixture.GaussianMixture",
    "sklearn.model_selection._classification_threshold.FixedThresholdClassifier",
    "sklearn.model_selection._classification_threshold.TunedThresholdClassifierCV",
    "sklearn.model_selection._search.GridSearchCV",
    "sklearn.model_selection._search.RandomizedSearchCV",
    "sklearn.multiclass.OneVsOneClassifier",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.multiclass.OutputCodeClassifier",
    "sklearn.multioutput.ClassifierChain",
    "sklearn.multioutput.MultiOutputClassifier",
    "sklearn.multioutput.MultiOutputRegressor",
    "sklearn.multioutput.RegressorChain",
    "sklearn.naive_bayes.BernoulliNB",
    "sklearn.naive_bayes.CategoricalNB",
    "sklearn.naive_bayes.ComplementNB",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.naive_bayes.MultinomialNB",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._classification.RadiusNeighborsClassifier",
    "sklearn.neighbors._graph.KNeighborsTransformer",
    "sklearn.neighbors._graph.RadiusNeighborsTransformer",
    "sklearn.neighbors._kde.KernelDensity",
    "sklearn.neighbors._lof.LocalOutlierFactor",
    "sklearn.neighbors._nca.NeighborhoodComponentsAnalysis",
    "sklearn.neighbors._nearest_centroid.NearestCentroid",
    "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.neighbors._regression.RadiusNeighborsRegressor",
    "sklearn.neighbors._unsupervised.NearestNeighbors",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
    "sklearn.neural_network._rbm.BernoulliRBM",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.Binarizer",
    "sklearn.preprocessing._data.KernelCenterer",
    "sklearn.preprocessing._data.MaxAbsScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.Normalizer",
    "sklearn.preprocessing._data.PowerTransformer",
    "sklearn.preprocessing._data.QuantileTransformer",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._discretization.KBinsDiscretizer",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.preprocessing._label.MultiLabelBinarizer",
    "sklearn.preprocessing._polynomial.PolynomialFeatures",
    "sklearn.preprocessing._polynomial.SplineTransformer",
    "sklearn.preprocessing._target_encoder.TargetEncoder",
    "sklearn.random_projection.GaussianRandomProjection",
    "sklearn.random_projection.SparseRandomProjection",
    "sklearn.semi_supervised._label_propagation.LabelPropagation",
    "sklearn.semi_supervised._label_propagation.LabelSpreading",
    "sklearn.semi_supervised._self_training.SelfTrainingClassifier",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.svm._classes.LinearSVR",
    "sklearn.svm._classes.NuSVC",
    "sklearn.svm._classes.NuSVR",
    "sklearn.svm._classes.OneClassSVM",
    "sklearn.svm._classes.SVC",
    "sklearn.svm._classes.SVR",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._classes.ExtraTreeRegressor",
)


_EST_WHY = "scikit-learn estimator: rebuilt with __new__ + BaseEstimator.__setstate__; __init__ only stores parameters"

# Internal scikit-learn types that fitted estimators hold in their state.
_SKLEARN_NEW: dict[str, str] = {
    # losses and links (GradientBoosting, HistGradientBoosting, GLMs)
    **{f"sklearn._loss.loss.{n}": "loss object: plain Python class holding a link and an interval"
       for n in ("AbsoluteError", "ExponentialLoss", "HalfBinomialLoss", "HalfGammaLoss",
                 "HalfMultinomialLoss", "HalfPoissonLoss", "HalfSquaredError", "HalfTweedieLoss",
                 "HalfTweedieLossIdentity", "HuberLoss", "PinballLoss")},
    **{f"sklearn._loss.link.{n}": "link function object: stateless Python class"
       for n in ("HalfLogitLink", "IdentityLink", "LogLink", "LogitLink", "MultinomialLogit")},
    "sklearn._loss.link.Interval": "dataclass of two floats and two bools",
    # Gaussian-process kernels
    **{f"sklearn.gaussian_process.kernels.{n}": "GP kernel: plain class storing hyper-parameters"
       for n in ("CompoundKernel", "ConstantKernel", "DotProduct", "ExpSineSquared", "Exponentiation",
                 "Matern", "PairwiseKernel", "Product", "RBF", "RationalQuadratic", "Sum", "WhiteKernel")},
    # cross-validation splitters kept by *CV estimators
    **{f"sklearn.model_selection._split.{n}": "CV splitter: stores n_splits/shuffle/random_state"
       for n in ("GroupKFold", "GroupShuffleSplit", "KFold", "LeaveOneGroupOut", "LeaveOneOut",
                 "LeavePGroupsOut", "LeavePOut", "PredefinedSplit", "RepeatedKFold",
                 "RepeatedStratifiedKFold", "ShuffleSplit", "StratifiedGroupKFold", "StratifiedKFold",
                 "StratifiedShuffleSplit", "TimeSeriesSplit", "_CVIterableWrapper")},
    # scorers kept by search / threshold estimators
    **{f"sklearn.metrics._scorer.{n}": "scorer: stores a score function (itself allow-listed) and kwargs"
       for n in ("_CurveScorer", "_MultimetricScorer", "_PassthroughScorer", "_Scorer")},
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer": "MLP optimizer state: arrays and floats",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer": "MLP optimizer state: arrays and floats",
    **{f"sklearn.utils._metadata_requests.{n}": "metadata-routing bookkeeping: dicts of strings"
       for n in ("MetadataRequest", "MetadataRouter", "MethodMapping", "MethodMetadataRequest",
                 "MethodPair", "RouterMappingPair")},
    "sklearn.utils._bunch.Bunch": "dict subclass with attribute access",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": (
        "HGB tree: node array + bitsets; structure validated after load"),
    "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace": (
        "private GP classifier (a BaseEstimator): arrays and a kernel"),
    "sklearn.model_selection._search_successive_halving.HalvingGridSearchCV": (
        "experimental estimator (not in all_estimators): stores parameters and results"),
    "sklearn.model_selection._search_successive_halving.HalvingRandomSearchCV": (
        "experimental estimator (not in all_estimators): stores parameters and results"),
    "sklearn.impute._iterative.IterativeImputer": "experimental estimator (not in all_estimators): stores parameters",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper": (
        "HGB binner (a private estimator): bin thresholds arrays"),
    "sklearn.cluster._birch._CFNode": "Birch tree node: arrays and lists",
    "sklearn.cluster._birch._CFSubcluster": "Birch subcluster: arrays and floats",
    "sklearn.cluster._bisect_k_means._BisectingTree": "BisectingKMeans tree node: arrays and children",
    "sklearn.calibration._CalibratedClassifier": "calibration wrapper: estimator + calibrators",
    "sklearn.calibration._SigmoidCalibration": "sigmoid calibrator: two floats",
    "sklearn.calibration._TemperatureScaling": "temperature calibrator: a float",
    "sklearn.multiclass._ConstantPredictor": "constant predictor: stores y",
    **{f"sklearn.metrics._dist_metrics.{n}{b}": "distance metric (Cython): parameters arrays; rebuilt by newObj + __setstate__"
       for n in ("BrayCurtisDistance", "CanberraDistance", "ChebyshevDistance", "DiceDistance",
                 "EuclideanDistance", "HammingDistance", "HaversineDistance", "JaccardDistance",
                 "MahalanobisDistance", "ManhattanDistance", "MatchingDistance", "MinkowskiDistance",
                 "RogersTanimotoDistance", "RussellRaoDistance", "SEuclideanDistance",
                 "SokalMichenerDistance", "SokalSneathDistance") for b in ("32", "64")},
    **{f"sklearn.neighbors._kd_tree.{n}": "KD-tree (Cython): arrays set by __setstate__; validated after load"
       for n in ("KDTree", "KDTree32", "KDTree64")},
    **{f"sklearn.neighbors._ball_tree.{n}": "Ball tree (Cython): arrays set by __setstate__; validated after load"
       for n in ("BallTree", "BallTree32", "BallTree64")},
    # scipy containers
    **{f"scipy.sparse._{m}.{m}_{k}": "scipy sparse container: rebuilt with __new__ + __dict__ update (never called)"
       for m in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok") for k in ("matrix", "array")},
    "scipy.interpolate._bsplines.BSpline": "B-spline: knots/coefficient arrays (SplineTransformer)",
    # numpy containers rebuilt via their reconstructors
    "numpy.ndarray": "array type; only passed to the guarded _reconstruct, never called",
    "numpy.ma.core.MaskedArray": "masked array type; only passed to the guarded _mareconstruct",
    "numpy.ma.MaskedArray": "alias of numpy.ma.core.MaskedArray",
    "numpy.matrix": "matrix type (ndarray subclass); only passed to the guarded _reconstruct",
    "joblib.numpy_pickle.NumpyArrayWrapper": "joblib array header; handled by safeload itself, never instantiated",
}

# Callables REDUCE may call with attacker-chosen arguments.
_CALL: dict[str, tuple[str, str | None]] = {
    # numpy array / scalar reconstruction
    "numpy._core.multiarray._reconstruct": ("creates an empty array; guard bounds the shape", "reconstruct"),
    "numpy.core.multiarray._reconstruct": ("numpy 1.x name of _reconstruct; same guard", "reconstruct"),
    "numpy._core.multiarray.scalar": ("numpy scalar from dtype + bytes; guard bounds itemsize", "scalar"),
    "numpy.core.multiarray.scalar": ("numpy 1.x name of scalar; same guard", "scalar"),
    "numpy._core.numeric._frombuffer": ("array view over in-pickle bytes (protocol 5)", "frombuffer"),
    "numpy.core.numeric._frombuffer": ("numpy 1.x name of _frombuffer", "frombuffer"),
    "numpy.ma.core._mareconstruct": ("empty masked array; guard bounds the shape", "mareconstruct"),
    "numpy.dtype": ("dtype descriptor from a type string; no allocation", None),
    # numpy random state
    "numpy.random._pickle.__randomstate_ctor": ("RandomState; guard pins the bit-generator constructor", "randomstate_ctor"),
    "numpy.random._pickle.__generator_ctor": ("Generator; guard pins the bit-generator constructor", "generator_ctor"),
    "numpy.random._pickle.__bit_generator_ctor": ("bit generator by name; guard requires a known name/class", "bit_generator_ctor"),
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": ("Cython unpickle helper: SeedSequence.__new__ + state", "pyx_unpickle_seedsequence"),
    "numpy.random._mt19937.MT19937": ("bit generator seeded from its arguments; guard refuses lazy (range) seeds",
                                      "seeded"),
    "numpy.random._pcg64.PCG64": ("bit generator seeded from its arguments; guard refuses lazy seeds", "seeded"),
    "numpy.random._pcg64.PCG64DXSM": ("bit generator seeded from its arguments; guard refuses lazy seeds", "seeded"),
    "numpy.random._philox.Philox": ("bit generator seeded from its arguments; guard refuses lazy seeds", "seeded"),
    "numpy.random._sfc64.SFC64": ("bit generator seeded from its arguments; guard refuses lazy seeds", "seeded"),
    "numpy.random.bit_generator.SeedSequence": ("seed sequence from integers; guard refuses lazy entropy", "seeded"),
    "numpy.random.mtrand.RandomState": ("legacy RandomState from a seed; guard refuses lazy seeds", "seeded"),
    "numpy.random._generator.Generator": ("Generator wrapping an allowed bit generator", None),
    # scikit-learn Cython helpers
    "sklearn.tree._tree.Tree": ("tree container (n_features, n_classes, n_outputs); guard bounds sizes; validated after load", "sklearn_tree"),
    "sklearn.metrics._dist_metrics.newObj": ("returns cls.__new__(cls); guard requires an allow-listed class", "new_obj"),
    "sklearn.neighbors._kd_tree.newObj": ("returns cls.__new__(cls); guard requires an allow-listed class", "new_obj"),
    "sklearn.neighbors._ball_tree.newObj": ("returns cls.__new__(cls); guard requires an allow-listed class", "new_obj"),
    **{f"sklearn._loss._loss.{n}": ("Cython loss: numeric parameters only", None)
       for n in ("CyAbsoluteError", "CyExponentialLoss", "CyHalfBinomialLoss", "CyHalfGammaLoss",
                 "CyHalfMultinomialLoss", "CyHalfPoissonLoss", "CyHalfSquaredError", "CyHalfTweedieLoss",
                 "CyHalfTweedieLossIdentity", "CyHuberLoss", "CyPinballLoss")},
    **{f"sklearn.linear_model._sgd_fast.{n}": ("SGD loss (Cython): numeric parameters only", None)
       for n in ("EpsilonInsensitive", "Hinge", "ModifiedHuber", "SquaredEpsilonInsensitive", "SquaredHinge")},
    "sklearn.impute._iterative._ImputerTriplet": ("namedtuple of (feat_idx, neighbor_feat_idx, estimator)", None),
    "sklearn._loss._loss.__pyx_unpickle_CyHalfMultinomialLoss": (
        "Cython unpickle helper; guard requires its own class", "pyx_unpickle"),
    "functools.partial": ("partial of an allowed function; guard refuses classes that may not be called", "partial"),
    # the standard library names that ordinary pickles use
    "copyreg._reconstructor": ("protocol 0/1 object rebuild; guard requires an allow-listed class and a plain base", "reconstructor"),
    "_codecs.encode": ("bytes from str in protocol 2; guard requires the latin1 codec", "codecs_encode"),
    "builtins.set": ("set from an in-pickle iterable; guard bounds a range, tuple hashing and colliding items", "materialise"),
    "builtins.frozenset": ("frozenset from an in-pickle iterable; guard bounds a range, tuple hashing and colliding items",
                           "materialise"),
    "builtins.bytearray": ("bytearray from in-pickle bytes; guard refuses integer sizes", "sized_buffer"),
    "builtins.bytes": ("bytes from in-pickle data; guard refuses integer sizes", "sized_buffer"),
    "builtins.complex": ("complex from two numbers", None),
    "builtins.slice": ("slice of three values", None),
    "builtins.range": ("lazy range of integers (param grids): allocates nothing itself; every allowed callable "
                       "that would take its elements is guarded; guard requires plain integers", "range"),
    "collections.OrderedDict": ("ordered dict; items come from the pickle; guard bounds a range, tuple hashing and colliding keys",
                                "materialise_pairs"),
    "collections.defaultdict": ("defaultdict; its factory must itself be an allowed name; guard bounds a range and colliding keys",
                                "materialise_pairs"),
    "collections.Counter": ("dict subclass counting an iterable; guard bounds a range, tuple hashing and colliding items",
                            "materialise"),
    "datetime.datetime": ("date/time value from numbers or in-pickle bytes", None),
    "datetime.date": ("calendar date value from numbers or in-pickle bytes", None),
    "datetime.timedelta": ("duration value", None),
}

# Referenced as values inside models (dtype parameters, score functions, ufuncs).
_NUMPY_TYPES = ("bool_", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64", "longdouble", "complex64", "complex128", "object_",
                "str_", "bytes_", "intp", "uintp", "datetime64", "timedelta64")
_UFUNCS = ("abs", "absolute", "arccos", "arcsin", "arctan", "arcsinh", "arctanh", "cbrt", "ceil",
           "cos", "cosh", "exp", "exp2", "expm1", "fabs", "floor", "log", "log10", "log1p", "log2",
           "negative", "reciprocal", "rint", "sign", "sin", "sinh", "sqrt", "square", "tan", "tanh",
           "trunc", "add", "subtract", "multiply", "divide", "true_divide", "maximum", "minimum",
           "power", "arctan2", "hypot", "logaddexp")
_NUMPY_FUNCS = ("mean", "median", "sum", "max", "min", "amax", "amin", "std", "var", "nanmean",
                "nanmedian", "average", "prod", "ptp")
_SKLEARN_FUNCS = {
    "sklearn.feature_selection._univariate_selection": ("f_classif", "f_regression", "chi2", "r_regression"),
    "sklearn.feature_selection._mutual_info": ("mutual_info_classif", "mutual_info_regression"),
    "sklearn.metrics._classification": ("accuracy_score", "balanced_accuracy_score", "f1_score", "fbeta_score",
                                        "precision_score", "recall_score", "log_loss", "matthews_corrcoef",
                                        "jaccard_score", "hamming_loss", "zero_one_loss", "brier_score_loss",
                                        "cohen_kappa_score", "precision_recall_fscore_support"),
    "sklearn.metrics._regression": ("r2_score", "mean_squared_error", "mean_absolute_error", "median_absolute_error",
                                    "explained_variance_score", "max_error", "mean_squared_log_error",
                                    "mean_absolute_percentage_error", "mean_poisson_deviance", "mean_gamma_deviance",
                                    "mean_tweedie_deviance", "d2_absolute_error_score", "root_mean_squared_error"),
    "sklearn.metrics._ranking": ("roc_auc_score", "average_precision_score", "roc_curve", "precision_recall_curve",
                                 "ndcg_score", "dcg_score", "top_k_accuracy_score"),
    "sklearn.metrics.cluster._supervised": ("adjusted_rand_score", "rand_score", "mutual_info_score",
                                            "adjusted_mutual_info_score", "normalized_mutual_info_score",
                                            "homogeneity_score", "completeness_score", "v_measure_score",
                                            "fowlkes_mallows_score"),
    "sklearn.cluster._kmeans": ("_kmeans_single_lloyd", "_kmeans_single_elkan"),
    "sklearn.metrics.pairwise": ("euclidean_distances", "manhattan_distances", "cosine_similarity",
                                 "cosine_distances", "rbf_kernel", "linear_kernel", "polynomial_kernel",
                                 "sigmoid_kernel", "laplacian_kernel", "chi2_kernel", "additive_chi2_kernel"),
}
_VALUE: dict[str, str] = {
    **{f"numpy.{t}": "numpy scalar type used as a dtype value" for t in _NUMPY_TYPES},
    **{f"numpy.{u}": "numpy ufunc used as a value (e.g. FunctionTransformer(np.log1p)); pure arithmetic" for u in _UFUNCS},
    **{f"numpy.{f}": "numpy reduction used as a value (e.g. pooling_func=np.mean); pure arithmetic" for f in _NUMPY_FUNCS},
    **{f"{m}.{f}": "scikit-learn metric/score function used as a value; pure computation"
       for m, fs in _SKLEARN_FUNCS.items() for f in fs},
    "sklearn.utils.validation.check_array": "input validation function kept as a value (HGB categorical preprocessing)",
    "scipy._lib.array_api_compat.numpy._aliases.asarray": "array-API namespace function kept as a value; pure conversion",
    "builtins.object": "base class argument of copyreg._reconstructor",
    "builtins.float": "Python type used as a dtype value",
    "builtins.int": "Python type used as a dtype value",
    "builtins.bool": "Python type used as a dtype value",
    "builtins.str": "Python type used as a dtype value",
    "builtins.list": "Python type used as a defaultdict factory value",
    "builtins.dict": "Python type used as a defaultdict factory value",
    "builtins.tuple": "Python type used as a value",
}


def _build() -> tuple[Entry, ...]:
    entries: dict[str, Entry] = {}
    for name in _ESTIMATORS:
        entries[name] = Entry(name, Kind.NEW, _EST_WHY)
    for name, why in _SKLEARN_NEW.items():
        entries[name] = Entry(name, Kind.NEW, why)
    for name, (why, guard) in _CALL.items():
        entries[name] = Entry(name, Kind.CALL, why, guard)
    for name, why in _VALUE.items():
        entries.setdefault(name, Entry(name, Kind.VALUE, why))
    return tuple(entries[k] for k in sorted(entries))


DEFAULT_ENTRIES: tuple[Entry, ...] = _build()
