"""The machinery under the convolution Functions: chunks spread over threads (results in
order, errors raised, BLAS held to one thread inside and restored after) and the
per-thread scratch buffers."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from chainrule.nn.functional import _parallel, _scratch


def _blas_threads():
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_chunks_run_in_threads_and_come_back_in_order():
    seen = set()

    def work(a, b, slot):
        seen.add(threading.get_ident())
        return list(range(a, b)), slot

    with threadpool_limits(2, "blas"):
        parts = _parallel.map_chunks(work, 100, 7, elements=1 << 20)
    assert [i for p, _ in parts for i in p] == list(range(100))
    assert {slot for _, slot in parts} <= {0, 1}
    assert len(seen) >= 1


def test_small_jobs_and_one_thread_stay_on_the_calling_thread():
    me = threading.get_ident()
    with threadpool_limits(2, "blas"):
        parts = _parallel.map_chunks(lambda a, b, s: threading.get_ident(), 10, 1, elements=10)
    assert set(parts) == {me}
    with threadpool_limits(1, "blas"):
        parts = _parallel.map_chunks(lambda a, b, s: threading.get_ident(), 10, 1, elements=1 << 30)
    assert set(parts) == {me}


def test_blas_is_held_to_one_thread_inside_and_restored_after_an_error():
    inside = []

    def work(a, b, _slot):
        inside.append(_parallel.num_threads())
        if a == 30:
            raise ArithmeticError("chunk 30 failed")
        return a

    with threadpool_limits(2, "blas"):
        with pytest.raises(ArithmeticError, match="chunk 30 failed"):
            _parallel.map_chunks(work, 40, 10, elements=1 << 20)
        assert _blas_threads() == 2
    assert set(inside) == {1}


def test_chunk_size_aims_at_a_byte_budget():
    assert _parallel.chunk_size(256, 1000, 10_000) == 10
    assert _parallel.chunk_size(256, 10**9, 10_000) == 1
    assert _parallel.chunk_size(5, 1, 10_000) == 5


def test_scratch_reuses_a_buffer_by_name_and_grows_it():
    a = _scratch.scratch("test-a", (4, 5), np.float32)
    b = _scratch.scratch("test-a", (2, 3), np.float32)
    assert np.shares_memory(a, b) and b.shape == (2, 3) and b.flags.c_contiguous
    c = _scratch.scratch("test-b", (2, 3), np.float64)
    assert not np.shares_memory(a, c) and c.dtype == np.float64
    big = _scratch.scratch("test-a", (100, 100), np.float32)
    assert big.shape == (100, 100)


def test_padded_copies_keep_zero_margins():
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float64).reshape(2, 3, 4, 2) + 1
    pads = ((0, 0), (1, 1), (2, 0), (0, 0))
    p = _scratch.padded("test-pad", x, pads)
    np.testing.assert_array_equal(p, np.pad(x, pads))
    y = -x
    q = _scratch.padded("test-pad", y, pads)
    np.testing.assert_array_equal(q, np.pad(y, pads))


def test_pooled_arrays_are_reused_only_once_every_view_is_gone():
    shape = (512, 1024)  # 2 MB of float32: from the pool
    a = _scratch.empty(shape, np.float32)
    address = a.ctypes.data
    view = a.T[::2]
    del a
    b = _scratch.empty(shape, np.float32)
    assert b.ctypes.data != address  # the view still uses that memory
    view[...] = 1.0
    assert not np.shares_memory(b, view)
    del view
    c = _scratch.empty(shape, np.float32)
    assert c.ctypes.data == address and c.flags.writeable and c.shape == shape
    small = _scratch.empty((3, 4), np.float64)
    assert small.shape == (3, 4) and small.dtype == np.float64


def test_the_pool_frees_the_sizes_asked_for_least_recently_past_its_cap(monkeypatch):
    monkeypatch.setattr(_scratch, "POOL_BYTES", 5 << 20)
    monkeypatch.setattr(_scratch, "_pool", _scratch.OrderedDict())
    monkeypatch.setattr(_scratch, "_pooled", [0])
    a = [_scratch.empty((1 << 18,), np.float32) for _ in range(3)]  # 1 MB each
    b = [_scratch.empty((1 << 19,), np.float32) for _ in range(2)]  # 2 MB each
    del a
    assert _scratch._pooled[0] == 3 << 20
    del b  # 3 + 4 MB > 5 MB: the 1 MB buffers (asked for first) make room
    assert _scratch._pooled[0] <= 5 << 20 and (2 << 20) in _scratch._pool
    assert (1 << 20) not in _scratch._pool


@pytest.mark.parametrize("shape_a, shape_b", [((64, 96), (96, 700)), ((700, 96), (96, 64))])
def test_threaded_matmul_cuts_the_larger_operand_and_gives_the_product(shape_a, shape_b):
    from chainrule.nn.functional import _matmul

    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    cuts = []
    real = _parallel.map_chunks

    def spy(work, n, chunk, elements=None):
        cuts.append((n, chunk))
        return real(work, n, chunk, elements)

    with threadpool_limits(2, "blas"):
        _matmul.map_chunks, saved = spy, _matmul.map_chunks
        try:
            out = _matmul.matmul(a, b)
            small = _matmul.matmul(a[:4, :4], b[:4, :4])
        finally:
            _matmul.map_chunks = saved
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
    assert out.flags.c_contiguous and out.shape == (shape_a[0], shape_b[1])
    np.testing.assert_allclose(small, a[:4, :4] @ b[:4, :4], rtol=1e-12)
    assert cuts == [(700, 350)]  # one cut, through the 700 columns or rows
