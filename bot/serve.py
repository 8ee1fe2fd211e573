"""One process, several runners: the web app, Slack and Discord under one event loop.

The services are built once (`bot.services.build_services`) and shared by every adapter. Each
adapter is a *runner*: an async function that serves until a shared stop event is set and then
finishes its in-flight work. SIGTERM and SIGINT set the event; if one runner fails, the others
are stopped too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from bot.services import Services, StartupError, build_services, local_knowledge
from config.settings import Settings

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from bot.discord.app import LoreBot
    from bot.slack.app import SlackAdapter

log = logging.getLogger(__name__)

Runner = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


# ---- runners ---------------------------------------------------------------------------------


def slack_adapter(services: Services, **kwargs: Any) -> SlackAdapter:
    from bot.slack.app import build_slack_app

    return build_slack_app(services.settings, services.conversation, **kwargs)


def slack_socket_runner(adapter: SlackAdapter) -> Runner:
    from bot.slack.run import run_socket_mode

    token = adapter.settings.slack.app_token
    assert token is not None, "Socket Mode needs slack.app_token"

    async def run(stop: asyncio.Event) -> None:
        await run_socket_mode(adapter, token.get_secret_value(), stop)

    return run


def discord_bot(services: Services, **options: Any) -> LoreBot:
    from bot.discord.app import build_discord_bot

    return build_discord_bot(services.settings, services.conversation, **options)


def discord_runner(bot: LoreBot) -> Runner:
    from bot.discord.app import DiscordStartError
    from bot.discord.run import run_discord

    async def run(stop: asyncio.Event) -> None:
        try:
            await run_discord(bot, stop)
        except DiscordStartError as exc:
            raise StartupError(str(exc)) from exc

    return run


def web_app(services: Services, *, slack: SlackAdapter | None = None, console: bool = True) -> FastAPI:
    from bot.slack.run import slack_router
    from bot.web.app import create_app

    routers: list[APIRouter] = []
    if slack is not None:
        routers.append(slack_router(slack))
    health = {"slack": _slack_health(services.settings)}
    if services.settings.discord.configured:
        health["discord"] = "gateway"
    return create_app(services, routers=routers, health=health, console=console)


def _slack_health(settings: Settings) -> str:
    return settings.slack.mode if settings.slack.configured else "off"


def web_runner(app: FastAPI, host: str, port: int) -> Runner:
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # run_runners owns the signals
            yield

    async def run(stop: asyncio.Event) -> None:
        # proxy_headers off: X-Forwarded-For is believed only from web.trusted_proxies (bot.web.app).
        server = _Server(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, proxy_headers=False)
        )

        async def serve() -> None:
            try:
                await server.serve()
            except SystemExit:  # uvicorn exits the process when it cannot bind; stop gracefully instead
                raise StartupError(
                    f"the web app could not listen on {host}:{port} (see the log above)"
                ) from None

        serving = asyncio.create_task(serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.05)
        if serving.done():
            await serving  # it failed to start (e.g. the port is taken): raise that
            raise RuntimeError(f"the web server on {host}:{port} stopped at start-up")
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        log.info("web app listening on http://%s:%s", host, bound)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        await serving

    return run


async def run_runners(runners: dict[str, Runner], stop: asyncio.Event | None = None) -> None:
    """Run every runner until SIGTERM/SIGINT (or `stop`), then let each shut down gracefully.
    A runner that fails stops the rest, and its error is raised once all have finished."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, _on_signal, stop, sig)
            installed.append(sig)
    tasks = [asyncio.create_task(runner(stop), name=name) for name, runner in runners.items()]
    for task in tasks:  # whichever runner ends first (done or failed) stops the others
        task.add_done_callback(lambda _task: stop.set())
    try:
        await stop.wait()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    errors: list[BaseException] = []
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, StartupError):  # the command prints its one clear line
            log.debug("%s could not start", task.get_name(), exc_info=result)
            errors.append(result)
        elif isinstance(result, BaseException):
            log.error("%s failed", task.get_name(), exc_info=result)
            errors.append(result)
    if errors:
        raise errors[0]


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("%s received; shutting down", sig.name)
    stop.set()


# ---- the two commands ----------------------------------------------------------------------


async def serve(
    settings: Settings,
    *,
    slack: bool = True,
    web: bool = True,
    host: str | None = None,
    port: int | None = None,
    stop: asyncio.Event | None = None,
    services: Services | None = None,
    discord: bool | None = None,
    discord_options: dict[str, Any] | None = None,
) -> None:
    """`lore serve` (everything configured), `lore slack` (slack=True, web only for HTTP mode) and
    `lore discord` (discord=True alone). `discord` defaults to `web`: Discord runs beside the web
    app under `lore serve` when its token is set, and never under `lore slack`."""
    from bot.discord.app import DiscordStartError
    from bot.slack.app import SlackStartError
    from knowledge.store import IndexError_

    services = services or build_services(settings)
    runners: dict[str, Runner] = {}
    adapter: SlackAdapter | None = None
    bot: LoreBot | None = None
    try:
        try:
            local = local_knowledge(services.knowledge)
            if local is not None:
                # Open the index now: a second process on an embedded index fails here, clearly.
                await asyncio.to_thread(lambda: local.store)
            else:
                log.info("answers come from the index owner (index.owner = worker, the answer queue)")
            if slack and settings.slack.configured:
                adapter = slack_adapter(services)
                await adapter.start()
            if (web if discord is None else discord) and settings.discord.configured:
                bot = discord_bot(services, **(discord_options or {}))
                await bot.start_session()  # logs in (a wrong token stops here) and syncs commands
        except (IndexError_, SlackStartError, DiscordStartError) as exc:
            raise StartupError(str(exc)) from exc
        asyncio.get_running_loop().run_in_executor(None, _warm_up, services)
        http_slack = adapter is not None and settings.slack.mode == "http"
        if adapter is not None and not http_slack:
            runners["slack"] = slack_socket_runner(adapter)
        if bot is not None:
            runners["discord"] = discord_runner(bot)
        if web or http_slack:
            app = web_app(services, slack=adapter if http_slack else None, console=web)
            runners["web"] = web_runner(
                app, host or settings.web.host, settings.web.port if port is None else port
            )
        elif settings.web.ops_port and runners:  # probes and metrics of `lore slack` / `lore discord`
            app = web_app(services, console=False)
            runners["ops"] = web_runner(app, host or settings.web.host, settings.web.ops_port)
        if not runners:
            raise StartupError(
                "nothing to run: configure Slack or Discord (docs/slack.md, docs/discord.md) "
                "or enable the web app"
            )
        log.info("running: %s", ", ".join(runners))
        await run_runners(runners, stop)
    finally:
        if adapter is not None:
            await adapter.drain(30)  # answers in flight are finished, not dropped
            await adapter.close()
        if bot is not None:
            await bot.shutdown(30)
        await services.aclose()


def _warm_up(services: Services) -> None:
    """Say so if nothing is indexed yet, then load the embedding model and the engine before the
    first question arrives."""
    _warn_if_empty(services)
    local = local_knowledge(services.knowledge)
    if local is None:
        return  # the owner has them loaded
    try:
        local.engine  # noqa: B018 - the property builds it (and loads the model)
        local.embedder.warm()  # and the query sessions, the one for idle moments too
    except Exception:
        log.warning("warming up the answer engine failed; the first answer will retry", exc_info=True)


def _warn_if_empty(services: Services) -> None:
    """An empty index answers every question with "not in the docs", and a source indexed before
    permissions is left out of every chat answer: tell the operator why, and what to run."""
    try:
        empty = services.knowledge.is_empty()
    except Exception as exc:  # the owner is not up yet: /readyz and `lore doctor` say so too
        log.warning("could not ask the index whether anything is indexed: %s", exc)
        return
    workers = " (with workers: `lore sync run --all`)" if services.settings.redis.url else ""
    if empty:
        log.warning(
            "nothing is indexed yet, so every answer will say the docs don't cover it: "
            "index the configured sources with `lore index`%s",
            workers,
        )
        return
    try:
        unlabelled = [row["name"] for row in services.knowledge.sources_status() if row.get("unlabelled")]
    except Exception as exc:
        log.warning("could not ask the index for its sources: %s", exc)
        return
    if unlabelled:
        log.warning(
            "%s %s indexed before permissions: chat answers leave %s out until the next sync "
            "labels it (no re-embedding): run `lore index`%s",
            "source" if len(unlabelled) == 1 else "sources",
            ", ".join(unlabelled),
            "it" if len(unlabelled) == 1 else "them",
            workers,
        )
