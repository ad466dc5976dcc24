"""python -m deployment deploy | destroy | demo [options]"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

from burst.errors import BurstError
from chalicelib.errors import TaskError
from deployment import (
    api_access,
    chalice_stage,
    database,
    demo,
    full_scale,
    migrations,
    pipeline,
    stack,
)
from deployment.pipeline import StageDeployment
from localcloud.settings import Settings, SettingsError


def print_deployment(result: StageDeployment) -> None:
    deployed, outputs = result.deployed, result.outputs
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.step_seconds.items())
    api = deployed.api_url
    print(f"\nDeployed stage '{deployed.stage}' ({steps})")
    print(f"  functions:   {', '.join(deployed.functions)}")
    print(f"  task queue:  {outputs['TaskQueueUrl']}")
    print(f"  dead letters: {outputs['DeadLetterQueueUrl']}")
    print(f"  API (local URL): {api}")
    print(
        f"  API key of the write routes (x-api-key): {result.api_key}\n"
        "    kept only in the local cloud's endpoints.json (git-ignored); scripts/api-key prints it"
    )
    print(f"  dashboard:   {result.dashboard_url}  (open it in a browser)")
    print(
        f"  database:    through the proxy {result.database_proxy_endpoint}"
        if result.database_proxy_endpoint
        else "  database:    straight to PostgreSQL, no proxy (--no-database-proxy)"
    )
    print("  try:")
    print(f"    curl {api}health")
    print(
        f'    curl -X POST {api}tasks -H "x-api-key: $(scripts/api-key)" '
        "-H 'Content-Type: application/json' "
        """-d '{"type": "sleep", "payload": {"ms": 100}}'"""
    )
    print(f"    curl {api}status")


def add_database_proxy_switch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-database-proxy",
        dest="database_proxy",
        action="store_false",
        help="the functions connect straight to PostgreSQL, not through the local cloud's "
        "database proxy (RDS Proxy's stand-in): to show the 'too many connections' it prevents",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deployment")
    commands = parser.add_subparsers(dest="command", required=True)
    deploy_parser = commands.add_parser(
        "deploy", help="deploy the stack, migrations and the Chalice app"
    )
    deploy_parser.add_argument(
        "--stage",
        default=chalice_stage.STAGE,
        help="the stage of .chalice/config.json to deploy (default %(default)s; "
        f"{full_scale.STAGE}: the full-scale demo's)",
    )
    add_database_proxy_switch(deploy_parser)
    commands.add_parser("destroy", help="delete the Chalice app and the stack (keeps the data)")
    commands.add_parser("url", help="print the deployed API's local URL")
    commands.add_parser("key", help="print the API key of the write routes (x-api-key)")
    demo_parser = commands.add_parser(
        "demo", help="the main job's burst (a preset of scripts/burst) and its report"
    )
    demo.add_arguments(demo_parser)
    full_scale_parser = commands.add_parser(
        "full-scale-demo",
        help=f"deploy the {full_scale.STAGE} stage and send the spike that shows AWS's whole "
        "scaling curve (5, +300 a minute, 1,000, the fall)",
    )
    full_scale.add_arguments(full_scale_parser)
    add_database_proxy_switch(full_scale_parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = Settings.from_env()
        if args.command == "deploy":
            deployment = pipeline.deploy(cfg, stage=args.stage, database_proxy=args.database_proxy)
            print_deployment(deployment)
            return 0
        if args.command == "full-scale-demo":
            deployment = pipeline.deploy(
                cfg, stage=full_scale.STAGE, database_proxy=args.database_proxy
            )
            print_deployment(deployment)
            return full_scale.run(cfg, args)
        if args.command == "url":
            print(pipeline.api_url(cfg))
            return 0
        if args.command == "key":
            print(pipeline.api_key(cfg))
            return 0
        if args.command == "destroy":
            pipeline.destroy(cfg)
            print("destroyed the app and its stack; the tasks table is kept in PostgreSQL")
            return 0
        return demo.run(cfg, args)
    except (
        SettingsError,
        api_access.ApiAccessError,
        chalice_stage.DeployError,
        stack.StackError,
        migrations.MigrationError,
        database.DatabaseRoleError,
        BurstError,
        TaskError,
    ) as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        command = " ".join(map(str, error.cmd))
        print(f"{args.command}: {command} failed, exit status {error.returncode}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
