"""QoS profiles of the node's and the tools' topics, in one place."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

#: Camera images and CameraInfo: best effort, keep last 5 (what camera drivers publish with).
SENSOR = qos_profile_sensor_data
#: ``/tf_static`` publishers: reliable, transient local, so late subscribers still get it.
TF_STATIC_PUBLISHER = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: ``/tf_static`` subscribers: the latched message of every publisher (up to 100 of them).
TF_STATIC_SUBSCRIBER = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: The synthetic ground truth: kept for late-joining readers (a scorer discovered after the
#: first frames still gets them); readers must ask for the same durability.
GROUND_TRUTH = QoSProfile(depth=16, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: The node's outputs: reliable, keep last 2 (a slow reader gets the newest, not a backlog).
OUTPUTS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
#: ``/diagnostics``.
DIAGNOSTICS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
