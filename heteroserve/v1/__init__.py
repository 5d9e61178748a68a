"""Generated gRPC stubs (heteroserve.v1). Do not edit."""
