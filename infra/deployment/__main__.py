"""python -m deployment deploy | demo [options]"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

from deployment import chalice_stage, demo
from localcloud.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deployment")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("deploy", help="chalice deploy the app to the local cloud")
    demo_parser = commands.add_parser("demo", help="send a bounded burst to the deployed API")
    demo.add_arguments(demo_parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = Settings.from_env()
        if args.command == "deploy":
            deployed = chalice_stage.deploy(cfg)
            print(f"\nDeployed stage '{deployed.stage}': functions {', '.join(deployed.functions)}")
            print(f"API (local URL): {deployed.api_url}")
            print(f"  try: curl {deployed.api_url}health")
            return 0
        return demo.run(cfg, args)
    except (SettingsError, chalice_stage.DeployError, demo.DemoError) as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        command = " ".join(map(str, error.cmd))
        print(f"{args.command}: {command} failed, exit status {error.returncode}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
