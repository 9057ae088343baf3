"""Staff sign-in and sign-out, learners' join links, and ``/api/me``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import FromPath, JSONBody
from litestar.response import Redirect
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from appliance import clock
from appliance.accounts import services
from appliance.accounts.tables import Role, User
from appliance.auth.passwords import PasswordWorkers, WorkersBusy
from appliance.auth.ratelimit import SlidingWindow
from appliance.auth.schemas import JoinIn, LoginIn, Me, MePatch
from appliance.auth.sessions import start_session
from appliance.hosts import RedisLoginWindows
from appliance.state import app_state

__all__ = ["AuthController", "LoginLimiter"]


class LoginLimiter:
    """Sign-in attempts, counted per client address and per account.

    :meth:`reserve` counts an attempt before anything is awaited (so 30 concurrent attempts
    cannot all pass a limit of 5); :meth:`succeeded` and :meth:`release` give it back. With
    ``shared`` (several hosts, appliance/hosts.py) the windows live in Redis, counted atomically.
    """

    def __init__(
        self,
        per_address: int,
        per_account: int,
        window_s: int,
        shared: RedisLoginWindows | None = None,
    ) -> None:
        self.by_address = SlidingWindow(per_address, window_s)
        self.by_account = SlidingWindow(per_account, window_s)
        self.shared = shared

    def _retry_after(self, address: str, account: str) -> int:
        return max(self.by_address.retry_after(address), self.by_account.retry_after(account))

    async def retry_after(self, address: str, account: str) -> int:
        if self.shared is not None:
            return await self.shared.retry_after(address, account)
        return self._retry_after(address, account)

    async def reserve(self, address: str, account: str) -> int:
        """Count one attempt now; returns the seconds to wait instead when over a limit."""
        if self.shared is not None:
            return await self.shared.reserve(address, account)
        wait = self._retry_after(address, account)
        if not wait:
            self.by_address.hit(address)
            self.by_account.hit(account)
        return wait

    async def release(self, address: str, account: str) -> None:
        """The reserved attempt was not a guess (the server was busy): not counted."""
        if self.shared is not None:
            return await self.shared.release(address, account)
        self.by_address.release(address)
        self.by_account.release(account)

    async def succeeded(self, address: str, account: str) -> None:
        if self.shared is not None:
            return await self.shared.succeeded(address, account)
        self.by_address.release(address)
        self.by_account.reset(account)


def _workers(request: Request[Any, Any, Any]) -> PasswordWorkers:
    return app_state(request).password_workers


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def _me(user: User) -> Me:
    return Me(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        locale=user.locale,
    )


def _busy() -> Response[dict[str, Any]]:
    """Every password worker is busy and the queue is full: refused at once."""
    return Response(
        {"status_code": 503, "detail": "too many sign-ins at once, try again", "retry_after": 1},
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


def _too_many(retry_after: int) -> Response[dict[str, Any]]:
    return Response(
        {
            "status_code": 429,
            "detail": "too many failed sign-ins, try again later",
            "retry_after": retry_after,
        },
        status_code=HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(retry_after)},
    )


class AuthController(Controller):
    tags = ["auth"]

    @post("/api/auth/login", exclude_from_auth=True, status_code=HTTP_200_OK)
    async def login(
        self, request: Request[Any, Any, Any], data: JSONBody[LoginIn]
    ) -> Response[Any]:
        """Staff sign-in by email and password (learners use their join link)."""
        limiter = app_state(request).login_limiter
        email = data.email.strip().lower()
        address = _client(request)
        # Counted before any other await (atomically in Redis with several hosts): concurrent
        # attempts cannot all pass the check.
        wait = await limiter.reserve(address, email)
        if wait:
            return _too_many(wait)
        user = await User.objects().where(User.email == email).first()
        try:
            ok = await _workers(request).verify(user.password_hash if user else None, data.password)
        except WorkersBusy:
            await limiter.release(address, email)
            return _busy()
        if not ok or user is None or not user.active:
            raise NotAuthorizedException(detail="wrong email or password")
        await limiter.succeeded(address, email)
        if user.role == Role.learner.value:
            # A learner's password is a second factor on their join link's page, never a way
            # in without a valid link (said only to whoever knows the password).
            raise PermissionDeniedException(detail="learners sign in with their personal join link")
        response = Response(_me(user))
        start_session(request, response, {"uid": user.id})
        return response

    @get("/api/auth/csrf", exclude_from_auth=True)
    async def csrf(self) -> dict[str, str]:
        """Set the ``csrftoken`` cookie: send it back as ``X-CSRFToken`` on unsafe methods."""
        return {"header": "X-CSRFToken", "cookie": "csrftoken"}

    @post("/api/auth/logout", status_code=HTTP_200_OK)
    async def logout(self, request: Request[Any, Any, Any]) -> dict[str, str]:
        request.clear_session()
        return {"status": "signed out"}

    @get("/api/me")
    async def me(self, request: Request[User, Any, Any]) -> Me:
        return _me(request.user)

    @patch("/api/me")
    async def update_me(self, request: Request[User, Any, Any], data: JSONBody[MePatch]) -> Me:
        """Change one's own preferences (the interface language)."""
        user = request.user
        user.locale = data.locale
        await user.save([User.locale])
        return _me(user)

    @get("/join/{secret:str}", exclude_from_auth=True, include_in_schema=False)
    async def join(self, request: Request[Any, Any, Any], secret: FromPath[str]) -> Response[Any]:
        """A learner's personal link: says how to join; never signs anyone in by itself.

        Signing in is ``POST /join/{secret}`` (CSRF-protected): a GET from a mail scanner, a
        link preview or another site's page stores nothing and replaces no one's session. A
        browser goes to the join page (the secret in the URL fragment, which browsers never
        send on), which posts at once, or first asks when someone else is signed in.
        """
        link, problem = await _valid_link(request, secret)
        if link is None:
            return problem  # type: ignore[return-value]
        target = f"/classroom/{link.cohort}"
        scope_session = request.scope.get("session")
        session: dict[str, Any] = scope_session if isinstance(scope_session, dict) else {}
        if session.get("link") == link.id and session.get("uid") == link.user:
            return Redirect(path=target, status_code=303)  # already in through this link
        if link.needs_password:
            return _link_problem(request, "password_required", 401, secret)
        reason = "switch" if session.get("uid") is not None else "join"
        if _wants_html(request):
            return Redirect(path=f"/link-problem?reason={reason}#{secret}", status_code=303)
        return Response({"status": "confirm", "detail": reason, "method": "POST"})

    @post("/join/{secret:str}", exclude_from_auth=True, status_code=HTTP_200_OK)
    async def join_with_password(
        self, request: Request[Any, Any, Any], secret: FromPath[str], data: JSONBody[JoinIn]
    ) -> Response[Any]:
        """Join with a personal link (with the learner's password when they have one)."""
        link, problem = await _valid_link(request, secret)
        if link is None:
            return problem  # type: ignore[return-value]
        if link.needs_password:
            limiter = app_state(request).login_limiter
            key = f"link:{link.id}"
            address = _client(request)
            if data.password is None:
                wait = await limiter.retry_after(address, key)
                if wait:
                    return _too_many(wait)
                return _link_problem(request, "password_required", 401)
            wait = await limiter.reserve(address, key)
            if wait:
                return _too_many(wait)
            try:
                ok = await _workers(request).verify(link.password_hash, data.password)
            except WorkersBusy:
                await limiter.release(address, key)
                return _busy()
            if not ok:
                return _link_problem(request, "wrong_password", 401)
            await limiter.succeeded(address, key)
        target = f"/classroom/{link.cohort}"
        response = Response({"status": "joined", "next": target})
        start_session(
            request,
            response,
            {"uid": link.user, "link": link.id, "exp": link.expires_at.timestamp()},
        )
        return response


@dataclass(frozen=True, slots=True)
class _Link:
    id: int
    user: int
    cohort: int
    expires_at: dt.datetime
    password_hash: str | None

    @property
    def needs_password(self) -> bool:
        return bool(self.password_hash)


async def _valid_link(
    request: Request[Any, Any, Any], secret: str
) -> tuple[_Link | None, Response[Any] | None]:
    """The link if it opens a session now, else the refusal to answer with."""
    link = await services.resolve_link(secret)
    now = clock.utcnow()
    if link is None:
        return None, _link_problem(request, "unknown", 404)
    if link.revoked_at is not None:
        return None, _link_problem(request, "revoked", 410)
    if link.expires_at <= now:
        return None, _link_problem(request, "expired", 410)
    user = await User.objects().where(User.id == link.user).first()
    if user is None or not user.active or user.role != Role.learner.value:
        return None, _link_problem(request, "revoked", 410)
    return _Link(link.id, user.id, link.cohort, link.expires_at, user.password_hash), None


def _wants_html(request: Request[Any, Any, Any]) -> bool:
    return "text/html" in request.headers.get("accept", "") and request.method == "GET"


def _link_problem(
    request: Request[Any, Any, Any], reason: str, status: int, secret: str = ""
) -> Response[Any]:
    """A JSON refusal, or for a browser opening the link, the page that explains it.

    A learner whose link needs a password gets the page's password form; the secret travels in
    the URL fragment, which browsers never send to a server nor put in a Referer, so the form
    can post to ``/join/{secret}`` without the secret being written anywhere new.
    """
    if _wants_html(request):
        fragment = f"#{secret}" if reason == "password_required" and secret else ""
        return Redirect(path=f"/link-problem?reason={reason}{fragment}", status_code=303)
    return Response({"status_code": status, "detail": reason}, status_code=status)
