"""Base of every plugin kind: a class with a ``name`` and a typed ``Config``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ecgbench.errors import ConfigError


class PluginConfig(BaseModel):
    """Typed, frozen settings of a plugin; unknown keys and wrong types are rejected.

    Subclass it with one field per setting, each with a default and a
    ``Field(description=...)`` or a comment saying what it means and its unit.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Plugin:
    """A registered, named, configurable thing (dataset, model, compressor, ...).

    Subclasses set ``name`` (the key used in suites) and ``Config`` (a
    :class:`PluginConfig` subclass); instances hold a validated ``config``.
    ``ecgbench plugins`` shows ``description``, or the first line of the
    class docstring when it is not set.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    description: ClassVar[str] = ""

    @classmethod
    def summary(cls) -> str:
        """One line saying what the plugin does: ``description``, else the docstring's first line."""
        return summary_of(cls)

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def from_params(cls, params: dict[str, Any] | None, where: str = "") -> "Plugin":
        """Build the plugin from a mapping of settings, raising ConfigError on bad input."""
        return cls(parse_config(cls.Config, params or {}, where or cls.name))


def summary_of(thing: Any) -> str:
    """A registered thing's one-line description (its ``description``, else its docstring's first line)."""
    text = getattr(thing, "description", "") or ""
    if not text and isinstance(thing, type) and thing.__doc__ and thing.__doc__ is not Plugin.__doc__:
        text = thing.__doc__.strip().splitlines()[0]
    return text


def parse_config(config_type: type[BaseModel], data: Any, where: str) -> Any:
    """Validate ``data`` into ``config_type``; errors name ``where`` and the key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return config_type.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where, config_type)) from None


def format_validation_error(exc: ValidationError, where: str, config_type: type[BaseModel]) -> str:
    """One line per problem: ``where.key.path: message``, with a close-match hint for typos."""
    import difflib

    lines = []
    for err in exc.errors():
        path = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            known = _field_names_at(config_type, err["loc"][:-1])
            hint = difflib.get_close_matches(key, known, n=1)
            msg = f"unknown key '{key}'" + (f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(sorted(known)) or 'none'}")
        elif "input" in err and err["type"] not in ("missing",):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{path}: {msg}")
    return "; ".join(lines)


def _field_names_at(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
        args = getattr(current, "__args__", ())
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    return list(getattr(current, "model_fields", {}))
