"""interp_lib.text: windows of text as token batches."""

from __future__ import annotations

import pytest

from interp_lib.data import sample_text, token_windows
from interp_lib.models import course_model_available

TEXT = "The whale rose from the sea and the sailors watched it in silence. " * 30


def test_windows_are_consecutive_with_bos(tiny_model):
    windows = token_windows(tiny_model, TEXT, n_windows=4, length=20)
    assert windows.shape == (4, 20)
    ids = tiny_model.tokenizer(TEXT)["input_ids"]
    if ids[0] == tiny_model.tokenizer.bos_token_id:  # some tokenizers add BOS themselves
        ids = ids[1:]
    assert windows[:, 1:].flatten().tolist() == ids[: 4 * 19]
    assert (windows[:, 0] == tiny_model.tokenizer.bos_token_id).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_windows": 0, "length": 8}, "n_windows"),
    ({"n_windows": 1, "length": 1}, "length must be an int in 2..128"),
    ({"n_windows": 1, "length": 10_000}, "length must be an int in 2..128"),
    ({"n_windows": 10_000, "length": 64}, "enough for"),
])
def test_bad_window_requests_are_refused(tiny_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        token_windows(tiny_model, TEXT, **kwargs)


@pytest.mark.skipif(not course_model_available(), reason="no course model shipped")
def test_sample_text_is_the_shipped_held_out_text():
    text = sample_text()
    assert len(text) > 10_000 and text.strip()
