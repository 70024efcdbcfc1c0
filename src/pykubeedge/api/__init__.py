"""Wire schemas shared by the edge and the mappers (generated gRPC stubs, nothing else)."""
