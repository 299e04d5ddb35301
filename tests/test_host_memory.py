"""Offloaded stores on base or 2 MiB pages (cache.host_memory): same contents, aligned mappings, validated knobs."""

import pytest
import torch

from shadowkv_lab.cache import host_memory as hm
from shadowkv_lab.cache.stores import to_home


@pytest.mark.parametrize("shape,dtype", [((3, 5, 7), torch.bfloat16), ((0, 4), torch.float32), ((1 << 20,), torch.uint8)])
def test_huge_pages_tensor_is_a_plain_contiguous_tensor(shape, dtype):
    t = hm.pinned_empty(shape, dtype, "huge")
    assert t.shape == shape and t.dtype == dtype and t.is_contiguous()
    if t.numel():
        assert t.data_ptr() % hm.HUGE_PAGE == 0  # the range starts on a huge-page boundary
        x = torch.randn(shape).to(dtype)
        t.copy_(x)
        assert torch.equal(t, x)


def test_the_mapping_lives_as_long_as_a_view_of_it():
    t = hm.pinned_empty((4096,), torch.int32, "huge")
    t.copy_(torch.arange(4096, dtype=torch.int32))
    view = t[1000:1010]
    del t
    assert view.tolist() == list(range(1000, 1010))


def test_to_home_follows_the_environment(monkeypatch):
    x = torch.randn(6, 33, dtype=torch.float32)
    for pages in hm.HOST_PAGES:
        monkeypatch.setenv("SHADOWKV_LAB_HOST_PAGES", pages)
        y = to_home(x, torch.device("cpu"), pin=True)
        assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
        if pages == "huge":
            assert y.data_ptr() % hm.HUGE_PAGE == 0


def test_bad_page_kinds_are_named(monkeypatch):
    with pytest.raises(ValueError, match=r"pages='tiny': allowed \('default', 'huge'\)"):
        hm.pinned_empty((2,), torch.float32, "tiny")
    monkeypatch.setenv("SHADOWKV_LAB_HOST_PAGES", "1g")
    with pytest.raises(ValueError, match=r"SHADOWKV_LAB_HOST_PAGES='1g'"):
        to_home(torch.zeros(2), torch.device("cpu"), pin=True)
