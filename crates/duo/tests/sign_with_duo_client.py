#!/usr/bin/env python3
"""Signs requests with Duo's own Python client (PyPI: duo_client, 5.x), so that
tests/signing.rs can check portcullis' signing against it byte for byte.

Reads a JSON list of cases on stdin:
    {"method": ..., "host": ..., "path": ..., "params": {key: value or [values]},
     "date": ..., "ikey": ..., "skey": ...}
and prints a JSON list, one per case, of
    {"canonical": <signature version 2 canonical request>,
     "authorization": <the Authorization header duo_client sends>}.

The parameters go through duo_client.client.normalize_params first, as the
client's api_call does for signature versions 1 and 2 before it signs.
"""

import hashlib
import json
import sys

import duo_client.client as duo


def main():
    out = []
    for case in json.load(sys.stdin):
        params = duo.normalize_params(case["params"])
        canonical = duo.canonicalize(
            case["method"], case["host"], case["path"], params, case["date"], sig_version=2
        )
        authorization = duo.sign(
            case["ikey"],
            case["skey"],
            case["method"],
            case["host"],
            case["path"],
            case["date"],
            2,
            params,
            digestmod=hashlib.sha512,
        )
        out.append({"canonical": canonical, "authorization": authorization})
    json.dump(out, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
