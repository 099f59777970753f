"""Input shapes and input data settled on the controller: refuse rather than guess (plain data, no runtime)."""
import numpy as np
import pytest

from edgefarm.compressors.npz_data import ModelInput
from edgefarm.controller.planning.input_plan import (
    InputPlanError,
    parse_shape_args,
    plan_inputs,
    resolve,
    shapes_from_data,
)

F32, I64 = np.dtype("float32"), np.dtype("int64")
DETECTOR = [ModelInput("images", ("batch", 3, "height", "width"), F32)]
TEXT = [ModelInput("input_ids", ("batch", "seq"), I64), ModelInput("attention_mask", ("batch", "seq"), I64)]
VAD = [ModelInput("input", (1, 512), F32), ModelInput("state", (1, 1, 64), F32), ModelInput("sr", (), I64)]


def test_trtexec_syntax_repeated_or_comma_separated():
    assert parse_shape_args(["images:1x3x640x640"]) == (("images", (1, 3, 640, 640)),)
    assert parse_shape_args(["a:1x8,b:2x3", "c:4"]) == (("a", (1, 8)), ("b", (2, 3)), ("c", (4,)))
    assert parse_shape_args(["serving_default_x:0:1x4"]) == (("serving_default_x:0", (1, 4)),)
    assert parse_shape_args(["sr:scalar"]) == (("sr", ()),)


@pytest.mark.parametrize(("arg", "message"), [
    ("images", "write NAME:DIMS, e.g. --shape images:1x3x640x640"),
    ("images:1x3xHx640", "dims '1x3xHx640' are not whole numbers joined by 'x'"),
    ("images:1x3x-1x640", "not whole numbers"),
    ("images:1x3x0x640", "a dimension of 0 is empty"),
])
def test_bad_shape_arguments_say_what_to_write(arg, message):
    with pytest.raises(InputPlanError, match=message):
        parse_shape_args([arg])


def test_a_dynamic_dim_nothing_resolves_is_refused_with_a_ready_example():
    with pytest.raises(InputPlanError) as refused:
        resolve(DETECTOR, (), None, "detector")
    assert str(refused.value) == ("input 'images' has dynamic dims [batch, 3, height, width]: "
                                  "give them with --shape images:1x3x224x224")


def test_the_given_shape_is_the_run_shape_and_implies_the_batch():
    plan = resolve(DETECTOR, (("images", (2, 3, 640, 480)),), None, "detector")
    assert plan.shapes == (("images", (2, 3, 640, 480)),) and plan.batch_size == 2 and plan.pinned
    assert plan.text() == "images:2x3x640x480"


def test_a_leading_batch_alone_is_resolved_by_the_batch_size():
    classifier = [ModelInput("x", ("N", 1, 8, 8), F32)]
    plan = resolve(classifier, (), 4, "digits")
    assert plan.shapes == (("x", (4, 1, 8, 8)),) and not plan.pinned


@pytest.mark.parametrize(("given", "message"), [
    ((("image", (1, 3, 64, 64)),), "--shape names input 'image', but detector has inputs 'images' float32"),
    ((("images", (1, 3, 64)),), "has rank 4 \\[batch, 3, height, width\\], not 3"),
    ((("images", (1, 1, 64, 64)),), "dimension 1 of 'images' is fixed at 3"),
])
def test_shapes_that_contradict_the_model_are_refused(given, message):
    with pytest.raises(InputPlanError, match=message):
        resolve(DETECTOR, given, None, "detector")


def test_a_batch_size_that_contradicts_the_shape_is_refused():
    with pytest.raises(InputPlanError, match="--batch-size 4 contradicts the batch 1"):
        resolve(DETECTOR, (("images", (1, 3, 64, 64)),), 4, "detector")


def test_a_shared_symbol_resolves_the_other_input_and_must_agree():
    plan = resolve(TEXT, (("input_ids", (1, 128)),), None, "encoder")
    assert dict(plan.shapes) == {"input_ids": (1, 128), "attention_mask": (1, 128)}
    with pytest.raises(InputPlanError, match="symbolic dim 'seq' is 128 in 'input_ids' but 64 in 'attention_mask'"):
        resolve(TEXT, (("input_ids", (1, 128)), ("attention_mask", (1, 64))), None, "encoder")


def test_a_static_model_with_a_scalar_input_needs_nothing():
    plan = resolve(VAD, (), None, "vad")
    assert dict(plan.shapes) == {"input": (1, 512), "state": (1, 1, 64), "sr": ()} and plan.batch_size == 1


def _npz(tmp_path, **arrays):
    path = tmp_path / "inputs.npz"
    np.savez(path, **arrays)
    return path


def test_input_data_gives_the_shapes_one_sample_or_a_stack(tmp_path):
    one = _npz(tmp_path, images=np.zeros((1, 3, 320, 320), np.float32))
    assert plan_inputs(DETECTOR, (), None, one, "detector").shapes == (("images", (1, 3, 320, 320)),)
    frames = _npz(tmp_path, input=np.zeros((5, 1, 512), np.float32), state=np.zeros((1, 1, 64), np.float32),
                  sr=np.array(16000, np.int64))
    plan = plan_inputs(VAD, (), None, frames, "vad")
    assert dict(plan.shapes) == {"input": (1, 512), "state": (1, 1, 64), "sr": ()} and plan.inputs_npz == frames


def test_a_batch_in_the_data_is_honoured_not_reshaped(tmp_path):
    batch8 = _npz(tmp_path, images=np.zeros((8, 3, 64, 64), np.float32))
    plan = plan_inputs(DETECTOR, (), None, batch8, "detector")
    assert plan.shapes == (("images", (8, 3, 64, 64)),) and plan.batch_size == 8


@pytest.mark.parametrize(("arrays", "message"), [
    ({"input": np.zeros((1, 512), np.float32), "state": np.zeros((1, 1, 64), np.float32)},
     "no array 'sr' \\(it has \\['input', 'state'\\]\\); save one per input: 'input' float32\\[1, 512\\]"),
    ({"input": np.zeros((1, 512), np.float64), "state": np.zeros((1, 1, 64), np.float32), "sr": np.array(16000)},
     "array 'input' is float64, input 'input' takes float32; save it with .astype\\(np.float32\\)"),
    ({"input": np.zeros((512,), np.float32), "state": np.zeros((1, 1, 64), np.float32), "sr": np.array(16000)},
     "array 'input' has shape \\[512\\]; input 'input' is \\[1, 512\\]: give one sample of rank 2"),
    ({"input": np.zeros((1, 256), np.float32), "state": np.zeros((1, 1, 64), np.float32), "sr": np.array(16000)},
     "dimension 1 of 'input' is fixed at 512"),
    ({"input": np.zeros((3, 1, 512), np.float32), "state": np.zeros((2, 1, 1, 64), np.float32),
      "sr": np.array(16000)}, "different sample counts"),
    ({"input": np.zeros((1, 512), np.float32), "state": np.zeros((1, 1, 64), np.float32), "sr": np.array(16000),
      "extra": np.zeros(3)}, "array 'extra' is not an input of the model"),
])
def test_input_data_that_does_not_fit_is_refused(tmp_path, arrays, message):
    with pytest.raises(InputPlanError, match=message):
        plan_inputs(VAD, (), None, _npz(tmp_path, **arrays), "vad")


def test_shape_and_data_must_agree(tmp_path):
    data = _npz(tmp_path, images=np.zeros((1, 3, 320, 320), np.float32))
    with pytest.raises(InputPlanError, match="--shape images:1x3x640x640 contradicts --inputs"):
        plan_inputs(DETECTOR, (("images", (1, 3, 640, 640)),), None, data, "detector")


def test_data_that_is_not_an_npz_is_refused(tmp_path):
    junk = tmp_path / "inputs.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputPlanError, match="is not an .npz of plain arrays"):
        shapes_from_data(VAD, junk)
    with pytest.raises(InputPlanError, match="does not exist"):
        shapes_from_data(VAD, tmp_path / "missing.npz")
