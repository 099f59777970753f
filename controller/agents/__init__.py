"""The controller's edge to the boards: the gRPC client, wire records, the local agent, canary and channel security."""
