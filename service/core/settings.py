"""Settings: config/default.toml < config/$MIGRATOR_ENV.toml < MIGRATOR_* environment variables.
Parsed once at start-up; every problem is reported at once."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service.core.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 3001
    api_token: str | None = None
    state_url: str = "sqlite:///var/state.db"
    data_dir: Path = Path("data")
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # database hosts URLs may name (service.core.hosts); () = any
    log_level: str = "INFO"
    batch_size: int = 5000
    parallel_batches: int = 3
    timeout: float = 30.0
    max_running: int = 2  # migrations executing at once
    auth: bool = True  # MIGRATOR_AUTH=off switches the API token off (loopback addresses only)

    def __repr__(self) -> str:  # never print the token
        return f"Settings(host={self.host!r}, port={self.port}, state_url={self.state_url!r}, data_dir={self.data_dir})"


def _positive_int(raw: object, key: str, problems: list[str]) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        return raw
    problems.append(f"{key} must be a whole number >= 1, not {raw!r}")
    return 2


def load_settings(env: Mapping[str, str] | None = None, config_dir: Path | None = None) -> Settings:
    env = os.environ if env is None else env
    config_dir = config_dir or CONFIG_DIR
    problems: list[str] = []
    merged: dict[str, object] = {}
    files = [config_dir / "default.toml"]
    if env.get("MIGRATOR_ENV"):
        files.append(config_dir / f"{env['MIGRATOR_ENV']}.toml")
    for path in files:
        if not path.exists():
            if path.name != "default.toml":
                problems.append(f"config file {path} (from MIGRATOR_ENV) does not exist")
            continue
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        defaults = data.pop("defaults", {})
        merged.update(data)
        merged.update({f"default_{k}": v for k, v in defaults.items()})

    def pick(key: str, var: str, fallback: object) -> object:
        return env[var] if var in env and env[var] != "" else merged.get(key, fallback)

    port_raw = pick("port", "MIGRATOR_PORT", 3001)
    try:
        port = int(str(port_raw))
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        problems.append(f"MIGRATOR_PORT / port must be a TCP port number, not {port_raw!r}")
        port = 3001
    level = str(pick("log_level", "MIGRATOR_LOG_LEVEL", "INFO")).upper()
    if level not in LOG_LEVELS:
        problems.append(f"MIGRATOR_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    origins_raw = pick("allowed_origins", "MIGRATOR_ALLOWED_ORIGINS", [])
    origins = (
        tuple(o.strip() for o in origins_raw.split(",") if o.strip())
        if isinstance(origins_raw, str)
        else tuple(str(o) for o in origins_raw)  # type: ignore[attr-defined]
    )
    hosts_raw = pick("allowed_hosts", "MIGRATOR_ALLOWED_HOSTS", [])
    hosts = (tuple(h.strip() for h in hosts_raw.split(",") if h.strip()) if isinstance(hosts_raw, str)
             else tuple(str(h) for h in hosts_raw))  # type: ignore[attr-defined]
    state_url = str(pick("state_url", "MIGRATOR_STATE_URL", "sqlite:///var/state.db"))
    if not state_url.startswith(("sqlite://", "postgresql://", "postgres://")):
        problems.append(f"MIGRATOR_STATE_URL must be sqlite:///path or postgresql://…, not {state_url.split('://')[0]!r}")

    def number(key: str, fallback: float, minimum: float) -> float:
        raw = merged.get(f"default_{key}", fallback)
        try:
            value = float(str(raw))
            if value < minimum:
                raise ValueError
            return value
        except ValueError:
            problems.append(f"[defaults] {key} must be a number >= {minimum}, not {raw!r}")
            return fallback

    host = str(pick("host", "MIGRATOR_HOST", "127.0.0.1"))
    auth_raw = str(pick("auth", "MIGRATOR_AUTH", "on")).lower()
    if auth_raw not in ("on", "off"):
        problems.append(f"MIGRATOR_AUTH must be on or off, not {auth_raw!r}")
    elif auth_raw == "off" and host not in ("127.0.0.1", "localhost", "::1"):
        problems.append(f"MIGRATOR_AUTH=off is only allowed when listening on a loopback address, not {host!r}")
    settings = Settings(
        host=host,
        port=port,
        api_token=env.get("MIGRATOR_API_TOKEN") or None,
        state_url=state_url,
        data_dir=Path(str(pick("data_dir", "MIGRATOR_DATA_DIR", "./data"))),
        allowed_origins=origins,
        allowed_hosts=hosts,
        log_level=level,
        batch_size=int(number("batch_size", 5000, 1)),
        parallel_batches=int(number("parallel_batches", 3, 1)),
        timeout=number("timeout", 30.0, 0.1),
        auth=auth_raw != "off",
        max_running=_positive_int(merged.get("max_running_migrations", 2), "max_running_migrations", problems),
    )
    if problems:
        raise ConfigError("; ".join(problems), details=problems)
    return settings
