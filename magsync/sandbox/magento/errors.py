"""The simulated Magento's refusals: an HTTP status and Magento's error body."""

from __future__ import annotations

from typing import Any


class MagentoHttpError(Exception):
    """A refusal answered as ``{"message": "... %name ...", "parameters": ...}``."""

    def __init__(self, status: int, message: str,
                 parameters: dict[str, Any] | list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.parameters is not None:
            out["parameters"] = self.parameters
        return out
