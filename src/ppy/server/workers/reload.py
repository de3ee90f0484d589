"""``--reload``: watch the app folder and swap in a freshly imported registry.

Model: uvicorn's reloader watches with ``watchfiles``; we do too (``awatch``
in the server's own event loop), but swap a registry instead of restarting
the process, so connections stay open:

* A change builds a new :class:`Registry` in a thread (module code never
  blocks the event loop) under a fresh private package name (``ppy_app_<n>``,
  see :mod:`ppy.app.loader`), then :meth:`Dispatcher.swap` installs it in one
  assignment.  A call looks its function up once, so calls in flight finish
  on the old code, new calls see the new code, and no call mixes the two.
* Sibling imports by plain name (``import helpers``, found through the app
  folder on ``sys.path``) would otherwise come back from ``sys.modules``
  stale: before each rebuild every module whose file lies in the app folder
  is dropped from ``sys.modules`` (old code keeps the module objects it
  already holds).  Bytecode caches are not written while reloading, because
  ``.pyc`` validation by mtime (whole seconds) and size can miss a quick edit.
* An entry that imported before and fails now is reported in the log while
  its previous version keeps serving.
* With ``--isolate`` the pool's workers are restarted (idle ones at once,
  busy ones after their call).  A failing entry there keeps the *whole*
  previous registry, so the server and its workers never disagree.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import threading
from pathlib import Path

from ppy.app.registry import Registry
from ppy.server.state import ServerState

log = logging.getLogger("ppy.reload")


def prepare() -> None:
    """Before the first import: no ``.pyc`` writes here or in ``--isolate`` workers (see module doc)."""
    sys.dont_write_bytecode = True
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"


def drop_siblings(app_dir: Path) -> list[str]:
    """Forget modules imported from the app folder by plain name, so the next import re-reads them."""
    root = os.path.realpath(app_dir) + os.sep
    dropped = []
    for name, module in list(sys.modules.items()):
        if name.startswith("ppy_app_"):
            continue  # a registry's own package: unloaded as a whole after the swap
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.realpath(path).startswith(root):
            del sys.modules[name]
            dropped.append(name)
    return dropped


def rebuild(app_dir: Path, import_timeout: float | None = None) -> Registry:
    drop_siblings(app_dir)
    importlib.invalidate_caches()  # a new file must be found even if the folder's mtime did not move
    return Registry.build(app_dir, import_timeout)


async def in_daemon_thread(app_dir: Path, import_timeout: float | None) -> Registry:
    """:func:`rebuild` in a daemon thread: unlike ``asyncio.to_thread``, the loop's shutdown never joins it, so a
    rebuild still importing cannot hold the server's exit past its drain deadline."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Registry] = loop.create_future()

    def settle(result: Registry | None, exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, exc = rebuild(app_dir, import_timeout), None
        except BaseException as error:
            result, exc = None, error
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:  # the loop is closed: the server is exiting
            pass

    threading.Thread(target=run, name="ppy-reload", daemon=True).start()
    return await done


def keep_good(old: Registry, fresh: Registry) -> tuple[Registry, list[str]]:
    """``fresh``, with the previous version of every entry that imported before and fails now."""
    regressed = [entry for entry in fresh.failed if entry in old.entries]
    if not regressed:
        return fresh, []
    functions = dict(fresh.functions)
    for method, fn in old.functions.items():
        if method.rpartition(".")[0] in regressed:
            functions[method] = fn
    merged = Registry(fresh.app_dir, functions, (*fresh.entries, *regressed), dict(fresh.failed),
                      fresh.package, fresh.refused)
    return merged, regressed


class Reloader:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.app_dir = state.dispatcher.registry.app_dir
        self.reloads = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start watching, and return once the watch is in place.

        The first step of the watcher task creates the inotify watch synchronously (watchfiles sets it
        up on the first ``__anext__``), so one pass of the loop is enough.  The server binds its ports
        only after this: an edit made as soon as the port answers must not be missed.
        """
        self._task = asyncio.get_running_loop().create_task(self._watch())
        await asyncio.sleep(0)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None and self._lock.locked():  # a rebuild may be stuck in an import: stop now
            self._task.cancel()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                pass

    async def _watch(self) -> None:
        import watchfiles

        log.info("reload: watching %s for changes", self.app_dir)
        try:
            async for changes in watchfiles.awatch(self.app_dir, watch_filter=watchfiles.DefaultFilter(),
                                                   stop_event=self._stop):
                names = sorted({os.path.relpath(path, self.app_dir) for _change, path in changes})
                try:
                    await self.reload(names)
                except Exception:  # one bad reload must not stop the watcher: the next change tries again
                    log.exception("reload: reloading after a change to %s failed; still serving the previous "
                                  "code", ", ".join(names))
        except Exception:  # the watcher must never take the server down; serving old code is fine
            log.exception("reload: the file watcher stopped; restart the server to pick up changes")

    async def reload(self, changed: list[str]) -> None:
        async with self._lock:
            dispatcher = self.state.dispatcher
            old = dispatcher.registry
            fresh = await in_daemon_thread(self.app_dir, self.state.config.import_timeout)
            merged, regressed = keep_good(old, fresh)
            runner = dispatcher.runner
            isolated = runner.isolated
            if regressed and isolated:
                # Workers would import the broken files: keep everything as it was, report the errors.
                merged = Registry(old.app_dir, old.functions, old.entries, dict(fresh.failed), old.package,
                                  fresh.refused)
            dispatcher.swap(merged)
            if not (isolated and regressed):
                runner.reload()
            self.reloads += 1
            for package in {old.package, fresh.package} - {merged.package}:
                if package is not None:
                    package.unload()
            log.warning("reload: %s changed; now serving %d functions from %d entries%s",
                        ", ".join(changed) or "app folder", len(merged.functions), len(merged.entries),
                        " (isolated workers restarting)" if isolated and not regressed else "")
            for entry in regressed:
                log.error("reload: entry %r failed to import (%s); still serving its previous version until "
                          "the file is fixed", entry, fresh.failed[entry])
