"""Types for a connector's `Settings`, read the way the core reads its own keys."""

from __future__ import annotations

from typing import Annotated, Any, Self

import requests
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from poller.timeparse import parse_duration


def _positive_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration, not true or false")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be above 0")
    return seconds


#: Seconds, from a number or a string like "90s", "12h", "7d"; above 0.
Duration = Annotated[float, BeforeValidator(_positive_duration)]


class TokenOrPassword(BaseModel):
    """`token` (sent as Bearer) or `username` + `password` (HTTP basic), exactly one of them:
    the credentials of every server whose API takes both. A connector's `Settings` inherits
    it, and `authorise` puts them on the session, so none writes the rules again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = Field(
        default=None, description='an access token in quotes (or token_file = "path")'
    )
    username: str | None = Field(default=None, description="a user name in quotes")
    password: SecretStr | None = Field(
        default=None, description='the password in quotes (or password_file = "path")'
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both 'username' and 'password', or neither")
        if self.token is None and self.username is None:
            raise ValueError("set 'token' (an access token), or 'username' and 'password'")
        if self.token is not None and self.username is not None:
            raise ValueError("set either 'token' or 'username' and 'password', not both")
        return self

    def authorise(self, session: requests.Session) -> None:
        """Every request of `session` carries these credentials."""
        if self.token is not None:
            session.headers["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        elif self.password is not None:
            session.auth = (self.username or "", self.password.get_secret_value())
