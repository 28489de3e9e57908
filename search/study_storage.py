"""Where a sweep's Optuna study lives, and how every reader of it opens it.

``search.storage`` names an RDB URL (PostgreSQL, MySQL, SQLite) for a new sweep; empty means the SQLite file
``SWEEP/optuna.db``. The sweep records the URL it used in ``sweep.json`` (``study_storage``) without a password,
and every reader (the sweep's searcher and plots, ``--resume``, ``--warm-start``, ``talsearch ui --optuna``)
takes it from there. The password comes at run time from libpq (``PGPASSWORD``, ``~/.pgpass``) or from a config
loaded in the same process (``tal_core.config`` keeps it in memory only); it is never written to a file or log:
the storage object Ray Tune pickles into its checkpoints holds the URL without it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import optuna

from tal_core.config import split_password, study_storage_password
from tal_core.errors import UserError

logger = logging.getLogger("talsearch.sweep")
DEFAULT_FILE = "optuna.db"
CONNECT_TIMEOUT_S = 10


def default_url(sweep_dir: Path) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / DEFAULT_FILE}"


def _absolute(url: str) -> str:
    """A relative SQLite path made absolute (readers run from other folders)."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{Path(url[len('sqlite:///'):]).resolve()}"
    return url


def redact(url: str) -> str:
    """The URL as it may be recorded and shown: without a password."""
    return split_password(url)[0]


def new_sweep_url(configured: str, sweep_dir: Path) -> str:
    """The study URL a new sweep records: ``search.storage`` (no password, SQLite paths absolute), or the
    SQLite file in the sweep folder."""
    return _absolute(redact(configured)) if configured else default_url(sweep_dir)


def recorded_url(sweep_dir: Path, state: dict) -> str:
    """The study URL a sweep folder's ``sweep.json`` names (its SQLite file for sweeps recorded before the
    key; the sweep folder's own optuna.db when the folder moved since)."""
    sweep_dir = Path(sweep_dir).resolve()
    url = state.get("study_storage") or default_url(sweep_dir)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.is_file() and path.name == DEFAULT_FILE and (sweep_dir / DEFAULT_FILE).is_file():
            return default_url(sweep_dir)
    return url


def sweep_url(sweep_dir: str | Path) -> str:
    """The study URL of the sweep in ``sweep_dir`` (read from its sweep.json)."""
    sweep_dir = Path(sweep_dir).resolve()
    state_path = sweep_dir / "sweep.json"
    if not state_path.is_file():
        if (sweep_dir / DEFAULT_FILE).is_file():
            return default_url(sweep_dir)
        raise UserError(f"{sweep_dir / DEFAULT_FILE}: no Optuna study here (no sweep.json: is {sweep_dir} a "
                        f"sweep folder?)")
    return recorded_url(sweep_dir, json.loads(state_path.read_text()))


def study_file_missing(url: str) -> Path | None:
    """The SQLite file ``url`` names when it does not exist (a reader must not create an empty study)."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return Path(url[len("sqlite:///"):])
    return None


def needs_network(url: str) -> bool:
    """True for a study on a database server (not a SQLite file)."""
    return bool(url) and not url.startswith("sqlite:")


def sweep_needs_network(configured: str, out, resume: bool, warm_start=None) -> bool:
    """True when a study the sweep command opens (its own, or the warm start's) is on a database server, which
    a private network namespace (search.private_network) could not reach."""
    urls = [] if resume else [configured]
    for folder in ([out] if resume else []) + ([warm_start] if warm_start is not None else []):
        try:
            urls.append(sweep_url(folder))
        except (UserError, OSError, ValueError):
            pass  # the sweep itself says what is wrong
    return any(needs_network(url) for url in urls)


def connect_url(url: str) -> str:
    """The URL SQLAlchemy connects with: the password a config gave in this process put back (else libpq
    finds it: PGPASSWORD, ~/.pgpass), and ``postgresql://`` driven by psycopg 3 where psycopg2 is absent."""
    clean, password = split_password(url)
    password = password if password is not None else study_storage_password(clean)
    if password is not None:
        from urllib.parse import quote, urlsplit, urlunsplit

        parsed = urlsplit(clean)
        user, host = parsed.netloc.rsplit("@", 1)
        url = urlunsplit(parsed._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _engine_kwargs(url: str) -> dict:
    if url.startswith("postgresql") and "connect_timeout" not in url:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


class StudyStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose ``url`` (and so what pickling keeps: Ray Tune checkpoints its searcher, study
    and storage included) carries no password; unpickled, it connects again with the password found at run
    time."""

    def __init__(self, url: str, **kwargs):
        super().__init__(connect_url(url), engine_kwargs=_engine_kwargs(url), **kwargs)
        self._hide_password(url)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__({**state, "url": connect_url(state["url"])})
        self._hide_password(state["url"])

    def _hide_password(self, url: str) -> None:
        self.url = redact(url)
        self._version_manager.url = self.url


def open_storage(url: str) -> StudyStorage:
    """The study's storage, connected now: an unreachable server, a refused password or a missing driver is a
    one-line UserError naming the URL without its password."""
    import sqlalchemy.exc

    shown = redact(url)
    try:
        return StudyStorage(url)
    except ImportError as error:
        cause = error.__cause__ or error
        raise UserError(f"search.storage {shown}: the database driver is not installed ({cause}); PostgreSQL "
                        f"needs psycopg (pip install 'psycopg[binary]'), MySQL PyMySQL (mysql+pymysql://)") from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, RuntimeError) as error:
        raise UserError(f"search.storage {shown}: cannot open the Optuna study's database: "
                        f"{_first_line(error, url)}") from None


def _first_line(error: Exception, url: str) -> str:
    original = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    text = lines[0] if lines else type(original).__name__
    password = split_password(connect_url(url))[1]
    return text.replace(password, "***") if password else text


def load_study(url: str, study_name: str) -> optuna.Study:
    """An existing study, read through ``open_storage``."""
    missing = study_file_missing(url)
    if missing is not None:
        raise UserError(f"{missing}: no Optuna study here (the sweep's study_storage)")
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        raise UserError(f"search.storage {redact(url)}: holds no study named '{study_name}'") from None


def check_sweep_storage(sweep_dir: Path, configured: str, previous: dict | None) -> str:
    """The study URL of the sweep in ``sweep_dir`` (the one ``previous``, the sweep.json of a sweep being
    resumed, records; else ``search.storage``'s), its database reached before any work starts (a new sweep's
    default SQLite file needs no check)."""
    sweep_dir = Path(sweep_dir).resolve()
    if previous is not None:
        url = recorded_url(sweep_dir, previous)
        if configured and _absolute(redact(configured)) != url:
            logger.warning(f"[sweep] search.storage {redact(configured)} is not where this sweep's study lives; "
                           f"resuming with the recorded {url}")
    else:
        url = new_sweep_url(configured, sweep_dir)
    if previous is not None or url != default_url(sweep_dir):
        open_storage(url).engine.dispose()
    logger.info(f"[sweep] Optuna study in {url}")
    return url
