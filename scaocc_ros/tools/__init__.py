"""Tools around the node (not needed to run it): the synthetic camera car, its messages,
the rosbag2 tools (synth, play, infer), the demo and its child processes."""
