"""Knowledge distillation: real teacher -> student training on digits."""

import numpy as np
import pytest

from compress_helpers import context, copy_model, digits, mlp
from edgepack.errors import RecipeError
from edgepack.passes.base import Labeled
from edgepack.passes.distill import Distill
from edgepack.passes.lowrank import LowRank
from edgepack.passes.training import evaluate_accuracy


@pytest.fixture(scope="module")
def teacher():
    return mlp(hidden=96, epochs=10, softmax=True)


def test_distill_recovers_accuracy_after_lowrank(teacher):
    ctx = context()
    ctx.teacher = teacher
    student = LowRank(LowRank.Config(ranks={"fc1": 3})).apply(copy_model(teacher), ctx)
    before = evaluate_accuracy(student, ctx.eval)
    assert before < evaluate_accuracy(teacher, ctx.eval) - 3  # rank 3 really costs accuracy
    ctx.records.append({})
    out = Distill(Distill.Config(fine_tune={"epochs": 4, "learning_rate": 2e-3, "validation_split": 0})).apply(student, ctx)
    rec = ctx.records[-1]
    assert rec["accuracy_before_pct"] == pytest.approx(before)
    assert rec["accuracy_after_pct"] > before + 2
    assert evaluate_accuracy(out, ctx.eval) == pytest.approx(rec["accuracy_after_pct"])


def test_soft_targets_alone_teach_the_student(teacher):
    """alpha=1 ignores labels: with every training label scrambled the student still learns the task."""
    tr, ev = digits()
    scrambled = Labeled(tr.x, np.random.RandomState(0).permutation(tr.y))
    ctx = context()
    ctx.train, ctx.teacher = scrambled, teacher
    student = mlp(hidden=32, epochs=0, seed=1)
    Distill(Distill.Config(alpha=1.0, temperature=2.0,
                           fine_tune={"epochs": 6, "learning_rate": 3e-3, "validation_split": 0})).apply(student, ctx)
    agree = np.mean(np.argmax(student.predict(ev.x, verbose=0), -1) == np.argmax(teacher.predict(ev.x, verbose=0), -1))
    assert agree > 0.85
    assert evaluate_accuracy(student, ev) > 80.0


def test_distill_keeps_pruned_zeros_and_shared_values(teacher):
    from compress_helpers import magnitude_prune
    from edgepack.passes.cluster import Cluster, kernel_of

    ctx = context()
    ctx.teacher = teacher
    student = Cluster(Cluster.Config(clusters=4, preserve_sparsity=True)).apply(
        magnitude_prune(copy_model(teacher), 0.85, epochs=1), ctx)
    w0 = kernel_of(student.get_layer("fc1"))
    ctx.records.append({})
    Distill(Distill.Config(fine_tune={"epochs": 2, "learning_rate": 1e-3, "validation_split": 0})).apply(student, ctx)
    w1 = kernel_of(student.get_layer("fc1"))
    assert np.array_equal(w1 == 0, w0 == 0)  # same pruning mask
    assert np.unique(w1[w1 != 0]).size <= 4  # still 4 shared values ...
    assert not np.allclose(np.unique(w1), np.unique(w0))  # ... which did move (fine-tuned centroids)
    assert {p["layer"] for p in ctx.records[-1]["preserved"]} == {"fc1", "out"}


def test_teacher_errors(teacher, tmp_path):
    from edgepack.keras_compat import keras

    ctx = context()
    with pytest.raises(RecipeError, match="no teacher"):
        Distill(Distill.Config()).apply(mlp(epochs=0), ctx)
    k = keras()
    ctx.teacher = k.Sequential([k.layers.InputLayer((8, 8, 1)), k.layers.Flatten(), k.layers.Dense(3)])
    with pytest.raises(RecipeError, match="same task"):
        Distill(Distill.Config()).apply(mlp(epochs=0), ctx)
    with pytest.raises(RecipeError, match="needs train data"):
        Distill(Distill.Config()).apply(mlp(epochs=0), context(train=False))
    path = tmp_path / "teacher.h5"
    teacher.save(path)
    small = tmp_path / "small.h5"
    ctx.teacher.save(small)
    with pytest.raises(RecipeError, match="same task"):
        Distill(Distill.Config(teacher=str(small))).preflight(mlp(epochs=0))
    Distill(Distill.Config(teacher=str(path))).preflight(mlp(epochs=0))
    ctx = context()
    ctx.records.append({})
    Distill(Distill.Config(teacher=str(path), fine_tune={"epochs": 1, "validation_split": 0})).apply(mlp(epochs=0), ctx)
    assert ctx.records[-1]["teacher"] == str(path)
