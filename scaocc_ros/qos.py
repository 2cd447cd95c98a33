"""QoS profiles of the node's and the tools' topics, in one place."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

#: Camera images and CameraInfo: best effort, keep last 5 (what camera drivers publish with).
SENSOR = qos_profile_sensor_data
#: Publishers of camera images in the tools: reliable, which serves reliable and best-effort readers alike.
CAMERA_PUBLISHER = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def image_subscription(reliability: str, depth: int) -> QoSProfile:
    """QoS of the node's image and CameraInfo subscriptions (``image_reliability``, ``image_qos_depth``).

    A reliable subscription only matches reliable publishers; best effort matches both.
    """
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=depth, reliability=policy)
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
#: ``~/bev``: reliable, transient local, keep last 1, as Nav2's static layer subscribes
#: (``map_subscribe_transient_local``): a costmap started later still gets the newest grid.
BEV = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: ``/tf``: what tf2's listener uses (reliable, volatile, keep last 100).
TF = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
