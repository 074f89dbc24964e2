"""Call Mandate's Authorize from Python with a client generated from proto/.

    python -m venv .venv && .venv/bin/pip install grpcio grpcio-tools
    .venv/bin/python -m grpc_tools.protoc -I ../../proto --python_out=. \
        --grpc_python_out=. ../../proto/mandate/v1/authorization.proto
    .venv/bin/python authorize.py ../../data/dev agents/patcher read handbook

The dev server's SVID carries `localhost` and `127.0.0.1` besides its SPIFFE
ID, so gRPC's default host-name check passes on loopback.
"""

import sys
from pathlib import Path

import grpc

from mandate.v1 import authorization_pb2 as pb
from mandate.v1 import authorization_pb2_grpc as rpc


def main() -> int:
    dev, who, action, resource = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(dev / "bundle.pem").read_bytes(),
        private_key=(dev / who / "svid.key").read_bytes(),
        certificate_chain=(dev / who / "svid.pem").read_bytes(),
    )
    with grpc.secure_channel("localhost:7443", credentials) as channel:
        response = rpc.AuthorizationServiceStub(channel).Authorize(
            pb.AuthorizeRequest(action=action, resource=pb.Resource(id=resource))
        )
    print(pb.Decision.Name(response.decision), response.decision_id,
          list(response.determining_policies), list(response.reasons))
    return 0 if response.decision == pb.DECISION_ALLOW else 1


if __name__ == "__main__":
    sys.exit(main())
