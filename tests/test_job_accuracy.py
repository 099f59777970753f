"""On-device top-1 through a real engine, including an NHWC .tflite fed NCHW evaluation data."""
import numpy as np

from edgefarm.agent.backends import litert
from edgefarm.agent.backends.base import BackendOptions
from edgefarm.agent.job import _fit_layout, top1_on_device


def test_nchw_eval_data_is_transposed_for_an_nhwc_model():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    fitted = _fit_layout(x, [1, 4, 5, 3])
    assert fitted.shape == (2, 4, 5, 3) and fitted[1, 2, 3, 0] == x[1, 0, 2, 3]
    assert _fit_layout(x, [1, 3, 4, 5]) is x


def test_top1_on_a_real_tflite_engine(tflite_models, tmp_path):
    engine = litert.load(str(tflite_models / "float32.tflite"), BackendOptions())
    try:
        sample = np.load(tflite_models / "sample_input.npy")           # NHWC, as the model takes it
        labels = np.argmax(np.load(tflite_models / "reference_output.npy"), axis=1)
        nchw = sample.transpose(0, 3, 1, 2)                            # what a PyTorch eval set holds
        np.savez(tmp_path / "eval.npz", x=nchw, y=labels)
        assert top1_on_device(engine, str(tmp_path / "eval.npz")) == 1.0
    finally:
        engine.close()
