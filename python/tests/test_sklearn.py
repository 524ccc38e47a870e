"""nfk.NFK as a scikit-learn estimator: clone, Pipeline, GridSearchCV, pickle, deepcopy,
save/load, and scikit-learn's own check_estimator where its assumptions fit."""
import copy
import gc
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator

import nfk
from support import N, Cnn, cli


class AnyWidth(torch.nn.Module):
    """A classifier for examples of any shape (scikit-learn's checks vary the feature count and
    the scale): bounded summary features, then two linear layers (the layer tape covers them)."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(3, 4)
        self.fc2 = torch.nn.Linear(4, 3)

    def forward(self, x):
        h = x.flatten(1)
        f = torch.stack([torch.sin(h).mean(1), torch.cos(h).mean(1), torch.sin(2 * h).mean(1)], 1)
        return self.fc2(torch.tanh(self.fc1(3 * f)))


def two_classes(n=N, seed=0):
    """Images [n, 1, 8, 8] whose class (y) is a brighter top half."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.random((n, 1, 8, 8), dtype=np.float32)
    x[y == 1, :, :4] += 0.5
    return x, y


def test_clone_keeps_parameters_and_drops_the_fit(d, fitted):
    m = nfk.NFK(str(d / "cnn.pt"), "classifier", rank=3, seed=5, method="exact", verbose=0)
    c = clone(m)
    assert c is not m and c.get_params() == m.get_params()
    fresh = clone(fitted)
    assert fresh.get_params() == fitted.get_params()
    assert not hasattr(fresh, "projector_")
    with pytest.raises(NotFittedError):
        fresh.transform(np.zeros((2, 1, 8, 8), np.float32))
    # set_params/get_params round trip, and a module as the model parameter clones (a copy).
    net = torch.jit.script(Cnn().eval())
    m.set_params(model=net, rank=2)
    assert m.get_params()["rank"] == 2 and clone(m).model is not net


def test_pipeline_with_logistic_regression(d):
    x, y = two_classes()
    pipe = Pipeline([("nfk", nfk.NFK(str(d / "cnn.pt"), "classifier", rank=4, seed=1,
                                     verbose=0)),
                     ("clf", LogisticRegression(max_iter=1000))])
    pipe.fit(x, y)
    assert pipe.score(x, y) >= 0.9
    alone = nfk.NFK(str(d / "cnn.pt"), "classifier", rank=4, seed=1, verbose=0).fit(x)
    np.testing.assert_array_equal(pipe.named_steps["nfk"].transform(x), alone.transform(x))
    assert pipe.predict(torch.from_numpy(x)).shape == (N,)  # torch in: the classifier copes
    assert list(pipe.named_steps["nfk"].get_feature_names_out()) == ["nfk0", "nfk1", "nfk2",
                                                                     "nfk3"]


def test_grid_search_over_rank(d):
    x, y = two_classes()
    pipe = Pipeline([("nfk", nfk.NFK(Cnn().eval(), "classifier", seed=1, verbose=0)),
                     ("clf", LogisticRegression(max_iter=1000))])
    search = GridSearchCV(pipe, {"nfk__rank": [1, 4]}, cv=2).fit(x, y)
    assert list(search.cv_results_["param_nfk__rank"]) == [1, 4]
    assert search.best_params_["nfk__rank"] in (1, 4)
    best = search.best_estimator_.named_steps["nfk"]
    assert best.singular_values_.shape == (search.best_params_["nfk__rank"],)


@pytest.mark.parametrize("given", ["path", "script", "module"])
def test_pickle_deepcopy_and_save_load(d, tmp_path, given):
    """A fitted NFK pickles and deep-copies with its projector's bytes (the model embedded): the
    copies embed alike, also once the module and its temporary file are gone."""
    x = np.load(d / "x32.npy")
    eager = Cnn()
    eager.load_state_dict(torch.jit.load(str(d / "cnn.pt")).state_dict())
    model = {"path": str(d / "cnn.pt"), "script": torch.jit.script(eager.eval()),
             "module": eager.eval()}[given]
    m = nfk.NFK(model, "classifier", rank=4, seed=1, verbose=0).fit(x)
    ref = m.transform(x)
    copies = [pickle.loads(pickle.dumps(m)), copy.deepcopy(m)]
    m.save(tmp_path / "m.nfk")
    del model, m
    gc.collect()
    copies.append(nfk.NFK.load(tmp_path / "m.nfk", verbose=0))
    copies.append(pickle.loads(pickle.dumps(copies[-1])))
    for c in copies:
        np.testing.assert_array_equal(c.transform(x), ref)
        assert c.get_params()["rank"] == 4 and c.n_features_in_ == 64
    # The saved projector carries the model: the CLI embeds with it alone.
    cli("transform", "--projector", tmp_path / "m.nfk", "--data", d / "x32.npy", "--out",
        tmp_path / "e.npy", "--quiet")
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), ref)
    # An unfitted NFK with a TorchScript parameter pickles too.
    u = pickle.loads(pickle.dumps(nfk.NFK(torch.jit.script(Cnn().eval()), rank=2)))
    assert isinstance(u.model, torch.jit.ScriptModule) and not hasattr(u, "projector_")


# scikit-learn's checks that do not apply to nfk, and why. Every other check must pass.
NOT_APPLICABLE = {
    # nfk refuses complex and object arrays with a TypeError naming the dtype (its convention for
    # data of the wrong kind); the checks want a ValueError / object arrays converted.
    "check_complex_data": "complex data: TypeError, not ValueError",
    "check_dtype_object": "object arrays are refused, not converted",
}


def test_check_estimator(tmp_path):
    # The model by path: the checks compare joblib.hash of parameters before and after a fit,
    # and a torch module's hash changes under copy.deepcopy (which the checks apply) by itself.
    torch.manual_seed(0)
    torch.jit.script(AnyWidth().eval()).save(str(tmp_path / "any_width.pt"))
    est = nfk.NFK(str(tmp_path / "any_width.pt"), "classifier", rank=2, dtype="float64",
                  verbose=0)
    failed, ran = {}, []
    for e, check in check_estimator(est, generate_only=True):
        name = getattr(check, "func", check).__name__
        if name in NOT_APPLICABLE:
            continue
        ran.append(name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check(e)
        except Exception as ex:  # collect them all, to report every failure at once
            failed[name] = f"{type(ex).__name__}: {str(ex)[:300]}"
    assert not failed, failed
    assert len(ran) > 30, ran
