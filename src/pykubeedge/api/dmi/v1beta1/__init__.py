"""DMI v1beta1: ``api.proto`` (our own schema with upstream's names and field numbers) and the
stubs grpcio-tools 1.66.2 generated from it (``api_pb2``, ``api_pb2_grpc``). Regenerate with
``python -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src --grpc_python_out=src
src/pykubeedge/api/dmi/v1beta1/api.proto`` (``pip install .[codegen]``)."""
