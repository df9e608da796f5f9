"""The BLAS thread count under blocks entered from several threads at once; the BLAS named."""

from __future__ import annotations

import threading

from threadpoolctl import threadpool_info, threadpool_limits

from cnn_xp.threads import blas_description, get_num_threads, single_blas_thread


def test_overlapping_single_thread_blocks_restore_the_count_only_when_the_last_one_ends():
    with threadpool_limits(limits=2, user_api="blas"):
        entered, release_a, a_done = threading.Event(), threading.Event(), threading.Event()
        seen_by_a: list[int] = []

        def a() -> None:
            with single_blas_thread():
                seen_by_a.append(get_num_threads())
                entered.set()
                release_a.wait(5)
            a_done.set()

        worker = threading.Thread(target=a)
        worker.start()
        assert entered.wait(5)
        assert seen_by_a == [1]  # set from a thread other than the main one, too
        with single_blas_thread():  # B enters while A holds the count at 1 ...
            release_a.set()
            assert a_done.wait(5)  # ... and A leaves first: B must still run single-threaded
            assert get_num_threads() == 1
        worker.join(5)
        assert get_num_threads() == 2  # the last one out restored the count


def test_the_blas_is_named_with_the_kernels_it_chose():
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    text = blas_description()
    for lib in blas:  # as threadpoolctl sees it, in another way than the function asks it
        assert f"{lib['internal_api']} {lib['version']}" in text
        if lib.get("architecture"):
            assert f"({lib['architecture']} kernels)" in text
    assert blas or text == "no BLAS found"
