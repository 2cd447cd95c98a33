"""ROS 2 adapters around :mod:`scaocc_core`: the ``occ_node`` and its helpers.

Only thin glue lives here (message conversion, synchronisation, parameters, outputs,
diagnostics); all geometry and inference is in the core. The pure-Python helpers
(:mod:`scaocc_ros.sync`, :mod:`scaocc_ros.calibration`) import no ROS at all.
"""
