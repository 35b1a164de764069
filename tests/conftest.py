"""Set-up shared by every test module.

In a process with the CUDA simulator on (NUMBA_ENABLE_CUDASIM=1 before numba is imported:
tests/test_cuda_backend.py and tests/test_device.py start such processes), the simulator's
shared-memory allocation is made thread-safe before any kernel runs.

Why: the simulator runs each GPU thread of a block as a Python thread, and
``FakeCUDAShared.array`` creates a block's shared array on the first call from its line
with an unguarded check-then-insert. Two threads that both reach the check before either
inserts get different arrays, so a block reduction silently loses the parts of the threads
with the other array. On a GPU a shared array is one per block by construction; the race is
the simulator's, not the kernels'. It made a CI run fail once (the device optimiser's
gradient norm lost about 2 %, numba-cuda 0.30.4, the machine under load);
``test_the_simulator_guard_keeps_one_shared_array_per_block`` in tests/test_cuda_sim.py
shows the unguarded allocator losing parts and the guarded one not.
"""
import os
import sys
import threading

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    import numpy as np
    from numba import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    _unguarded_shared_array = kernelapi.FakeCUDAShared.array
    _shared_allocation_lock = threading.Lock()

    def _thread_safe_shared_array(self, shape, dtype, alignment=None):
        """``FakeCUDAShared.array`` with its check-then-insert under a lock: one array per
        (block, source line), as the simulator intends (same key: the caller's file and
        line)."""
        if shape == 0 or alignment is not None:   # dynamic shared memory: one buffer already;
            return _unguarded_shared_array(self, shape, dtype, alignment)  # alignment: its error
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with _shared_allocation_lock:
            array = self._allocations.get(key)
            if array is None:
                if isinstance(dtype, types.Type):
                    dtype = numpy_support.as_dtype(dtype)
                array = self._allocations[key] = np.empty(shape, dtype)
        return array

    _thread_safe_shared_array.unguarded = _unguarded_shared_array
    kernelapi.FakeCUDAShared.array = _thread_safe_shared_array
