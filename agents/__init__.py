"""RL algorithms written against nets and a Gymnasium env, with no knowledge of processes."""
