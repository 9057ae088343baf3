"""Staff sign-in and sign-out, learners' join links, and ``/api/me``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, JSONBody
from litestar.response import Redirect
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from appliance.accounts import services
from appliance.accounts.tables import Role, User
from appliance.auth.passwords import PasswordWorkers, WorkersBusy
from appliance.auth.ratelimit import SlidingWindow
from appliance.auth.schemas import JoinPassword, LoginIn, Me, MePatch
from appliance.auth.sessions import renew_session_id

__all__ = ["AuthController", "LoginLimiter"]


class LoginLimiter:
    """Sign-in attempts, counted per client address and per account.

    :meth:`reserve` counts an attempt before anything is awaited (so 30 concurrent attempts
    cannot all pass a limit of 5); :meth:`succeeded` and :meth:`release` give it back.
    """

    def __init__(self, per_address: int, per_account: int, window_s: int) -> None:
        self.by_address = SlidingWindow(per_address, window_s)
        self.by_account = SlidingWindow(per_account, window_s)

    def retry_after(self, address: str, account: str) -> int:
        return max(self.by_address.retry_after(address), self.by_account.retry_after(account))

    def reserve(self, address: str, account: str) -> int:
        """Count one attempt now; returns the seconds to wait instead when over a limit."""
        wait = self.retry_after(address, account)
        if not wait:
            self.by_address.hit(address)
            self.by_account.hit(account)
        return wait

    def release(self, address: str, account: str) -> None:
        """The reserved attempt was not a guess (the server was busy): not counted."""
        self.by_address.release(address)
        self.by_account.release(account)

    def succeeded(self, address: str, account: str) -> None:
        self.by_address.release(address)
        self.by_account.reset(account)


def _workers(request: Request[Any, Any, Any]) -> PasswordWorkers:
    return request.app.state.password_workers


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
        limiter: LoginLimiter = request.app.state.login_limiter
        email = data.email.strip().lower()
        address = _client(request)
        # Counted before the first await: concurrent attempts cannot all pass the check.
        wait = limiter.reserve(address, email)
        if wait:
            return _too_many(wait)
        user = await User.objects().where(User.email == email).first()
        try:
            ok = await _workers(request).verify(user.password_hash if user else None, data.password)
        except WorkersBusy:
            limiter.release(address, email)
            return _busy()
        if not ok or user is None or not user.active:
            raise NotAuthorizedException(detail="wrong email or password")
        limiter.succeeded(address, email)
        request.clear_session()
        renew_session_id(request)
        request.set_session({"uid": user.id})
        return Response(_me(user))

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
        """A learner's personal link: opens a session and lands in the classroom."""
        return await self._join(request, secret, password=None)

    @post("/join/{secret:str}", exclude_from_auth=True, status_code=HTTP_200_OK)
    async def join_with_password(
        self, request: Request[Any, Any, Any], secret: FromPath[str], data: JSONBody[JoinPassword]
    ) -> Response[Any]:
        """Join with a personal link whose learner has a password."""
        return await self._join(request, secret, password=data.password)

    async def _join(
        self, request: Request[Any, Any, Any], secret: str, password: str | None
    ) -> Response[Any]:
        link = await services.resolve_link(secret)
        now = dt.datetime.now(dt.UTC)
        if link is None:
            return _link_problem(request, "unknown", 404)
        if link.revoked_at is not None:
            return _link_problem(request, "revoked", 410)
        if link.expires_at <= now:
            return _link_problem(request, "expired", 410)
        user = await User.objects().where(User.id == link.user).first()
        if user is None or not user.active or user.role != Role.learner.value:
            return _link_problem(request, "revoked", 410)
        if user.password_hash:
            limiter: LoginLimiter = request.app.state.login_limiter
            key = f"link:{link.id}"
            address = _client(request)
            if password is None:
                wait = limiter.retry_after(address, key)
                if wait:
                    return _too_many(wait)
                return _link_problem(request, "password_required", 401, secret)
            wait = limiter.reserve(address, key)
            if wait:
                return _too_many(wait)
            try:
                ok = await _workers(request).verify(user.password_hash, password)
            except WorkersBusy:
                limiter.release(address, key)
                return _busy()
            if not ok:
                return _link_problem(request, "wrong_password", 401)
            limiter.succeeded(address, key)
        request.clear_session()
        renew_session_id(request)
        request.set_session({"uid": user.id, "link": link.id})
        target = f"/classroom/{link.cohort}"
        if password is None:
            return Redirect(path=target, status_code=303)
        return Response({"status": "joined", "next": target})


def _link_problem(
    request: Request[Any, Any, Any], reason: str, status: int, secret: str = ""
) -> Response[Any]:
    """A JSON refusal, or for a browser opening the link, the page that explains it.

    A learner whose link needs a password gets the page's password form; the secret travels in
    the URL fragment, which browsers never send to a server nor put in a Referer, so the form
    can post to ``/join/{secret}`` without the secret being written anywhere new.
    """
    if "text/html" in request.headers.get("accept", "") and request.method == "GET":
        fragment = f"#{secret}" if reason == "password_required" and secret else ""
        return Redirect(path=f"/link-problem?reason={reason}{fragment}", status_code=303)
    return Response({"status_code": status, "detail": reason}, status_code=status)
