"""ROS 2 adapters around :mod:`scaocc_core`: the ``occ_node`` and what it needs.

Only thin glue lives here (message conversion, synchronisation, parameters, outputs,
diagnostics, QoS); all geometry and inference is in the core. The node's callbacks and
``scaocc bag infer`` share one :class:`~scaocc_ros.pipeline.CameraSetPipeline`, which needs no
ROS runtime, nor do :mod:`scaocc_ros.sync`, :mod:`scaocc_ros.calibration` and
:mod:`scaocc_ros.motion`. The node is a managed (lifecycle) node whose parameters
(:mod:`scaocc_ros.node_params`) partly change at runtime. The tools
(synthetic cameras, bag tools, demo) live in :mod:`scaocc_ros.tools`.
"""
