"""Packaged Android models run in MediaPipe Tasks (the same C++ task graphs as on Android).

ImageClassifier on MLPerf Tiny's ResNet-8 (32x32x3, CIFAR-10 classes) packaged with uint8 and float I/O;
AudioClassifier on a small waveform model trained here on synthesized tones. MediaPipe reads only the
TFLite Metadata edgepack writes (normalization, image/audio properties, labels); its scores must equal
LiteRT's on the same model.

MediaPipe is installed beside edgepack with ``pip install --no-deps mediapipe`` (Makefile ``setup``):
pip cannot resolve it together with tensorflow-model-optimization (absl-py ~=2.3 vs ~=1.2).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgepack.runtime import LiteRT



@pytest.fixture(scope="module")
def mp():
    from edgepack.keras_compat import tf

    tf()  # mediapipe imports TensorFlow: let edgepack pick Keras 2 first
    return pytest.importorskip("mediapipe", reason="MediaPipe Tasks not installed (make setup installs it)")

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TONES = ["low", "mid", "high"]
RATE, SAMPLES = 16000, 1600


def _package(out, model, *args):
    from edgepack.cli import main

    # Proxy data (no CIFAR-10 offline; tones trained for seconds): these tests check that MediaPipe reads
    # the bundle and agrees with LiteRT, not the model's accuracy, so the accuracy gate is off.
    old, sys.argv = sys.argv, ["edgepack", "package", str(model), "--target", "android", "--out", str(out),
                               "-q", "--max-accuracy-drop", "none", *map(str, args)]
    try:
        main()
    except SystemExit as e:
        assert not e.code, f"package failed: {e.code}"
    finally:
        sys.argv = old
    return out


def _rgb_images(n: int, seed: int) -> np.ndarray:
    """Colored 32x32 digits from scikit-learn's digits (deterministic), pixels spanning 0..255."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    d = load_digits().images[seed * n : (seed + 1) * n] / 16.0
    d = np.kron(d, np.ones((4, 4)))[..., None]
    fg, bg = rng.integers(0, 256, (n, 1, 1, 3)), rng.integers(0, 256, (n, 1, 1, 3))
    img = bg + (fg - bg) * d + rng.normal(0, 12, (n, 32, 32, 3))
    img[:, 0, 0] = (0, 0, 0)  # the calibration range must reach both ends of 0..255
    img[:, 0, 1] = (255, 255, 255)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def resnet_bundles(tmp_path_factory, mlperf_dir):
    root = tmp_path_factory.mktemp("mp")
    np.savez(root / "calib.npz", x=_rgb_images(64, 0))
    (root / "labels.txt").write_text("\n".join(CIFAR10) + "\n")
    return {io: _package(root / io, mlperf_dir / "pretrainedResnet.h5", "--calibration", root / "calib.npz",
                         "--labels", root / "labels.txt", "--io", io)
            for io in ("uint8", "float")}


def _scores(result, n: int) -> np.ndarray:
    s = np.full(n, np.nan, dtype=np.float32)
    for c in result.categories:
        s[c.index] = c.score
    return s


@pytest.mark.parametrize("io", ["uint8", "float"])
def test_image_classifier_reads_the_bundle(mp, resnet_bundles, io):
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    out = resnet_bundles[io]
    man = json.loads((out / "manifest.json").read_text())
    assert man["mediapipe"] == {"task": "ImageClassifier", "usable": True, "why_not": None,
                                "input": "uint8" if io == "uint8" else "float32", "labels": True}
    path = out / "model.tflite"
    rt = LiteRT(path.read_bytes())
    images = _rgb_images(24, 1)
    opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
    strict = 0
    with vision.ImageClassifier.create_from_options(opts) as clf:
        for img in images:
            res = clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img)))
            (head,) = res.classifications
            assert head.head_name == "scores"
            assert sorted(c.category_name for c in head.categories) == sorted(CIFAR10)
            assert all(c.category_name == CIFAR10[c.index] for c in head.categories)
            ref = rt.predict(img[None].astype(np.float32))[0]
            got = _scores(head, 10)
            np.testing.assert_allclose(got, ref, atol=1e-6 if io == "uint8" else 1e-4)
            top = head.categories[0]
            assert ref[top.index] == pytest.approx(ref.max(), abs=1e-6 if io == "uint8" else 1e-4)  # ties aside
            strict += top.index == int(np.argmax(ref))
    assert strict >= 20  # of 24 (equal scores may be listed in another order)


def test_int8_image_io_is_flagged_and_mediapipe_refuses_it(mp, tmp_path, mlperf_dir):
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    np.savez(tmp_path / "calib.npz", x=_rgb_images(16, 0))
    out = _package(tmp_path / "int8", mlperf_dir / "pretrainedResnet.h5", "--calibration", tmp_path / "calib.npz",
                   "--io", "int8")
    man = json.loads((out / "manifest.json").read_text())
    assert man["mediapipe"]["usable"] is False and "--io uint8" in man["mediapipe"]["why_not"]
    assert "--io uint8" in (out / "README.md").read_text()
    opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(out / "model.tflite")))
    with pytest.raises(Exception, match="uint8/float32"):
        vision.ImageClassifier.create_from_options(opts)


def _tones(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    f = np.array([300.0, 1200.0, 4000.0])[y] * rng.uniform(0.85, 1.15, n)
    t = np.arange(SAMPLES) / RATE
    x = 0.5 * np.sin(2 * np.pi * f[:, None] * t + rng.uniform(0, 6.3, (n, 1))) + rng.normal(0, 0.05, (n, SAMPLES))
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def audio_bundle(tmp_path_factory):
    from edgepack.keras_compat import keras, set_seed

    set_seed(0)
    k = keras()
    root = tmp_path_factory.mktemp("audio")
    x, y = _tones(240, 0)
    model = k.Sequential([k.layers.Input((SAMPLES,)), k.layers.Reshape((SAMPLES, 1)),
                          k.layers.Conv1D(8, 16, strides=4, activation="relu"), k.layers.GlobalAveragePooling1D(),
                          k.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=4, batch_size=16, verbose=0)
    model.save(root / "tones.h5")
    np.savez(root / "calib.npz", x=x[:64])
    (root / "labels.txt").write_text("\n".join(TONES) + "\n")
    return _package(root / "android", root / "tones.h5", "--calibration", root / "calib.npz", "--labels",
                    root / "labels.txt", "--input-kind", "audio", "--sample-rate", RATE)


def test_audio_classifier_reads_the_bundle(mp, audio_bundle):
    from mediapipe.tasks.python import audio
    from mediapipe.tasks.python.components.containers.audio_data import AudioData
    from mediapipe.tasks.python.core.base_options import BaseOptions

    man = json.loads((audio_bundle / "manifest.json").read_text())
    assert man["mediapipe"]["task"] == "AudioClassifier" and man["mediapipe"]["usable"], man["mediapipe"]
    assert man["tflite_metadata"]["min_parser_version"] == "1.3.0"  # AudioProperties
    path = audio_bundle / "model.tflite"
    rt = LiteRT(path.read_bytes())
    x, _ = _tones(20, 1)
    opts = audio.AudioClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
    agree = 0
    with audio.AudioClassifier.create_from_options(opts) as clf:
        for clip in x:
            (res,) = clf.classify(AudioData.create_from_array(clip, RATE))
            (head,) = res.classifications
            assert sorted(c.category_name for c in head.categories) == sorted(TONES)
            ref = rt.predict(clip[None])[0]
            np.testing.assert_allclose(_scores(head, 3), ref, atol=1e-4)
            agree += head.categories[0].index == int(np.argmax(ref))
    assert agree == len(x)
