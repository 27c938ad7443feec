enum SupervisorModule {}  // replaced by the supervisor implementation
