enum NodeModule {}  // replaced by the node runtime
