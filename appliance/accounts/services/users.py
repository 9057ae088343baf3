"""Users: staff members and learners, their sign-in details and whether they are active."""

from __future__ import annotations

from appliance import clock
from appliance.accounts import schemas as s
from appliance.accounts.tables import JoinLink, User
from appliance.auth.passwords import hash_password_off_loop
from appliance.errors import conflict, not_found, require_visible

__all__ = ["create_user", "get_user", "normalise_email", "update_user", "user_out"]


def user_out(u: User) -> s.UserOut:
    return s.UserOut(
        id=u.id,
        email=u.email,
        display_name=u.display_name,
        role=u.role,  # type: ignore[arg-type]
        locale=u.locale,  # type: ignore[arg-type]
        active=u.active,
        has_password=bool(u.password_hash),
    )


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def get_user(user_id: int) -> User:
    user = await User.objects().where(User.id == user_id).first()
    if user is None:
        raise not_found("user not found")
    return user


async def _email_taken(email: str, exclude_id: int | None = None) -> bool:
    query = User.exists().where(User.email == email)
    if exclude_id is not None:
        query = User.exists().where((User.email == email) & (User.id != exclude_id))
    return bool(await query)


async def create_user(data: s.UserIn) -> User:
    email = normalise_email(data.email)
    if await _email_taken(email):
        raise conflict("email", "a user with this email already exists")
    user = User(
        email=email,
        display_name=require_visible("display_name", data.display_name),
        role=data.role,
        locale=data.locale,
        password_hash=await hash_password_off_loop(data.password) if data.password else None,
    )
    await user.save()
    return user


async def update_user(user_id: int, data: s.UserPatch) -> User:
    user = await get_user(user_id)
    if data.email is not None:
        email = normalise_email(data.email)
        if await _email_taken(email, exclude_id=user_id):
            raise conflict("email", "a user with this email already exists")
        user.email = email
    if data.display_name is not None:
        user.display_name = require_visible("display_name", data.display_name)
    if data.locale is not None:
        user.locale = data.locale
    if data.password is not None:
        user.password_hash = await hash_password_off_loop(data.password)
    if data.active is not None:
        user.active = data.active
    await user.save()
    if data.active is False:
        await _revoke_all_links_of(user_id)
    return user


async def _revoke_all_links_of(user_id: int) -> None:
    # A plain table update: join_links builds on enrolments, which builds on this module.
    await JoinLink.update({JoinLink.revoked_at: clock.utcnow()}).where(
        (JoinLink.user == user_id) & JoinLink.revoked_at.is_null()
    )
