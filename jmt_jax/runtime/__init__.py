"""What every command and run stands on: command lines (flags, one-line errors), joining a
cluster, SIGTERM, quiet library logs, and the device mesh with array placement."""
