"""Validate commune YAML files: every error, with its file, line and key path, in one run."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path as FsPath

from marelle.plugin_api.manager import payment_provider_classes
from marelle.plugin_api.payment import french_error
from pydantic import BaseModel, ValidationError

from tenants.commune_config.schema import CommuneConfig
from tenants.commune_config.yaml_source import (
    ConfigError,
    Path,
    SourceMap,
    YamlLoadError,
    format_path,
    load_yaml,
)

# Shapes of real secrets that must never sit in a YAML file.
_INLINE_SECRET = re.compile(
    r"(sk|rk)_(live|test)_[0-9A-Za-z]{6,}|whsec_[0-9A-Za-z]{6,}|-----BEGIN [A-Z ]*PRIVATE KEY"
)


@dataclass(frozen=True)
class LoadedCommune:
    path: FsPath
    config: CommuneConfig
    digest: str
    source_map: SourceMap


@dataclass
class ValidationReport:
    communes: list[LoadedCommune]
    errors: list[ConfigError]

    @property
    def ok(self) -> bool:
        return not self.errors

    def failed_files(self) -> set[str]:
        return {error.file for error in self.errors}


def config_digest(config: CommuneConfig) -> str:
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def collect_yaml_files(paths: Iterable[str | FsPath]) -> list[FsPath]:
    files: list[FsPath] = []
    for raw in paths:
        path = FsPath(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


def validate_files(paths: Iterable[str | FsPath]) -> ValidationReport:
    report = ValidationReport(communes=[], errors=[])
    for file in collect_yaml_files(paths):
        loaded, errors = validate_file(file)
        report.errors.extend(errors)
        if loaded:
            report.communes.append(loaded)
    report.errors.extend(_cross_file_errors(report.communes))
    failed = report.failed_files()
    report.communes = [c for c in report.communes if str(c.path) not in failed]
    return report


def validate_file(file: FsPath) -> tuple[LoadedCommune | None, list[ConfigError]]:
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [ConfigError(name, None, "", "fichier introuvable")]
    except UnicodeDecodeError as exc:
        return None, [ConfigError(name, None, "", f"le fichier n'est pas en UTF-8 ({exc.reason})")]
    return validate_text(text, name, expected_slug=file.stem)


def validate_text(text: str, name: str, *, expected_slug: str | None = None):
    try:
        data, source_map = load_yaml(text, name)
    except YamlLoadError as exc:
        return None, exc.errors
    if not isinstance(data, dict):
        return None, [ConfigError(name, 1, "", "le fichier doit être une section clé: valeur")]

    def error(path: Path, message: str) -> ConfigError:
        return ConfigError(name, source_map.line_for(path), format_path(path), message)

    errors: list[ConfigError] = []
    config = None
    try:
        config = CommuneConfig.model_validate(data)
    except ValidationError as exc:
        for item in exc.errors(include_url=False):
            path = _data_path(data, item["loc"])
            errors.append(error(path, _french_message(item, path)))

    errors.extend(_reference_errors(data, error))
    errors.extend(_plugin_errors(data, error))
    errors.extend(_inline_secret_errors(data, (), error))
    if expected_slug is not None and isinstance(data.get("slug"), str) and data["slug"] != expected_slug:
        errors.append(error(("slug",), f"le slug « {data['slug']} » doit être le nom du fichier (« {expected_slug} »)"))

    errors = sorted(set(errors), key=lambda e: (e.line or 0, e.path, e.message))
    if errors or config is None:
        return None, errors
    return LoadedCommune(FsPath(name), config, config_digest(config), source_map), []


# --- Messages -------------------------------------------------------------------------


def _data_path(data, loc) -> Path:
    """Keep the parts of a pydantic location that exist in the data (drops validator tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and not _looks_like_tag(part):
            path.append(part)  # a missing key: name it, the line is its parent's
            node = None
    return tuple(path)


def _looks_like_tag(part: str) -> bool:
    return "[" in part or part.startswith(("function-", "lax-", "json-"))


def _model_at(path: Path) -> type[BaseModel] | None:
    model: object = CommuneConfig
    for part in path:
        model = _unwrap(model)
        if isinstance(part, int):
            args = typing.get_args(model)
            model = args[0] if args else None
        elif isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        else:
            return None
    model = _unwrap(model)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation):
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else annotation
            if len(options) != 1:
                return annotation
        else:
            return annotation


def _french_message(item: dict, path: Path) -> str:
    kind, ctx, value = item["type"], item.get("ctx") or {}, item.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(path[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        hint = f" ; vouliez-vous dire « {close[0]} » ?" if close else (
            f" ; clés possibles : {', '.join(allowed)}" if allowed else "")
        return f"clé inconnue « {path[-1]} »{hint}"
    # The file's own shapes (sections, lists, dates); every other kind of error is worded
    # by the plugin API's French messages, shared with the plugins' settings.
    messages = {
        "missing": "champ obligatoire manquant",
        "list_type": "doit être une liste (éléments précédés de « - »)",
        "dict_type": "doit être une section (clé: valeur)",
        "model_type": "doit être une section (clé: valeur)",
        "model_attributes_type": "doit être une section (clé: valeur)",
        "date_type": "date invalide (format AAAA-MM-JJ)",
        "date_parsing": "date invalide (format AAAA-MM-JJ)",
        "date_from_datetime_parsing": "date invalide (format AAAA-MM-JJ)",
        "datetime_type": "date et heure invalides (format AAAA-MM-JJ HH:MM)",
        "datetime_parsing": "date et heure invalides (format AAAA-MM-JJ HH:MM)",
        "datetime_from_date_parsing": "date et heure invalides (format AAAA-MM-JJ HH:MM)",
        "time_type": "heure invalide (format HH:MM)",
        "time_parsing": "heure invalide (format HH:MM)",
    }
    if kind in messages:
        return messages[kind] + ("" if kind == "missing" else f" (valeur lue : {value!r})")
    if kind == "string_too_short":
        return "ne doit pas être vide"
    if kind == "too_short":
        return f"doit contenir au moins {ctx.get('min_length')} élément(s)"
    return french_error(item)


# --- Checks that relate parts of one file ----------------------------------------------


def _items(data, key) -> list[tuple[int, dict]]:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _codes(data, key) -> set[str]:
    return {item["code"] for _, item in _items(data, key) if isinstance(item.get("code"), str)}


def _duplicate_code_errors(data, key, base: Path, error) -> list[ConfigError]:
    seen: dict[str, int] = {}
    out = []
    for index, item in _items(data, key):
        code = item.get("code")
        if not isinstance(code, str):
            continue
        if code in seen:
            out.append(error((*base, key, index, "code"),
                             f"code « {code} » en double (déjà utilisé en {format_path((*base, key, seen[code]))})"))
        else:
            seen[code] = index
    return out


def _reference_errors(data: dict, error) -> list[ConfigError]:
    out: list[ConfigError] = []
    for key in ("regies", "services", "document_types", "authorisation_types", "quotient_brackets"):
        out += _duplicate_code_errors(data, key, (), error)
    regies = _codes(data, "regies")
    services = _codes(data, "services")
    documents = _codes(data, "document_types")
    brackets = _codes(data, "quotient_brackets")

    bracket_items = _items(data, "quotient_brackets")
    for position, (index, bracket) in enumerate(bracket_items):
        is_last = position == len(bracket_items) - 1
        if is_last and bracket.get("max_quotient") is not None:
            out.append(error(("quotient_brackets", index, "max_quotient"),
                             "la dernière tranche ne doit pas avoir de max_quotient (elle couvre le reste)"))
        if not is_last and bracket.get("max_quotient") is None:
            out.append(error(("quotient_brackets", index), "seule la dernière tranche peut omettre max_quotient"))
    maxima = [b.get("max_quotient") for _, b in bracket_items if isinstance(b.get("max_quotient"), int)]
    if maxima != sorted(set(maxima)):
        out.append(error(("quotient_brackets",), "les tranches doivent être rangées par max_quotient croissant"))

    for index, document in _items(data, "document_types"):
        for j, service in enumerate(document.get("required_for_services") or []):
            if isinstance(service, str) and service not in services:
                out.append(error(("document_types", index, "required_for_services", j),
                                 _unknown("service", service, services)))

    for index, service in _items(data, "services"):
        base = ("services", index)
        regie = service.get("regie")
        if isinstance(regie, str) and regie not in regies:
            out.append(error((*base, "regie"), _unknown("régie", regie, regies)))
        for key in ("establishments", "periods", "units"):
            out += _duplicate_code_errors(service, key, base, error)
        units = _codes(service, "units")
        opening = service.get("opening") if isinstance(service.get("opening"), dict) else {}
        open_days = opening.get("weekdays") if isinstance(opening.get("weekdays"), list) else None
        unit_kinds = {u.get("code"): u.get("kind") for _, u in _items(service, "units")}
        for u, unit in _items(service, "units"):
            for d, day in enumerate(unit.get("weekdays") or []):
                if open_days is not None and isinstance(day, str) and day not in open_days:
                    out.append(error((*base, "units", u, "weekdays", d),
                                     f"« {day} » n'est pas un jour d'ouverture du service ({', '.join(map(str, open_days))})"))
        enrolment = service.get("enrolment") if isinstance(service.get("enrolment"), dict) else {}
        for j, document in enumerate(enrolment.get("required_documents") or []):
            if isinstance(document, str) and document not in documents:
                out.append(error((*base, "enrolment", "required_documents", j),
                                 _unknown("type de pièce", document, documents)))
        for e, establishment in _items(service, "establishments"):
            capacities = establishment.get("unit_capacities")
            for unit in capacities if isinstance(capacities, dict) else {}:
                if unit not in units:
                    out.append(error((*base, "establishments", e, "unit_capacities", unit),
                                     _unknown("unité", unit, units)))
        pricing = service.get("pricing") if isinstance(service.get("pricing"), dict) else {}
        priced = set()
        for p, price in _items(pricing, "prices"):
            unit = price.get("unit")
            if isinstance(unit, str):
                if unit not in units:
                    out.append(error((*base, "pricing", "prices", p, "unit"), _unknown("unité", unit, units)))
                elif unit in priced:
                    out.append(error((*base, "pricing", "prices", p, "unit"), f"l'unité « {unit} » a déjà un prix"))
                priced.add(unit)
                if price.get("per") == "hour" and unit_kinds.get(unit) not in (None, "time_range"):
                    out.append(error((*base, "pricing", "prices", p, "per"),
                                     f"prix horaire réservé aux unités time_range (« {unit} » est {unit_kinds.get(unit)})"))
            by_quotient = price.get("by_quotient")
            if isinstance(by_quotient, dict):
                if not brackets:
                    out.append(error((*base, "pricing", "prices", p, "by_quotient"),
                                     "prix par quotient sans tranches : définir quotient_brackets"))
                else:
                    for code in by_quotient:
                        if code not in brackets:
                            out.append(error((*base, "pricing", "prices", p, "by_quotient", code),
                                             _unknown("tranche de quotient", code, brackets)))
                    missing = sorted(brackets - set(by_quotient))
                    if missing:
                        out.append(error((*base, "pricing", "prices", p, "by_quotient"),
                                         f"tranches sans prix : {', '.join(missing)}"))
        if pricing and isinstance(pricing.get("prices"), list):
            for u, unit in _items(service, "units"):
                if isinstance(unit.get("code"), str) and unit["code"] not in priced:
                    out.append(error((*base, "units", u, "code"),
                                     f"l'unité « {unit['code']} » n'a pas de prix dans pricing.prices (mettre amount_cents: 0 si gratuite)"))
    return out


def _unknown(what: str, value: str, known: set[str]) -> str:
    listed = ", ".join(sorted(known)) if known else "aucun(e)"
    return f"{what} « {value} » non défini(e) (connu(e)s : {listed})"


def _plugin_errors(data: dict, error) -> list[ConfigError]:
    providers = payment_provider_classes()
    out = []
    for index, regie in _items(data, "regies"):
        payment = regie.get("payment")
        if not isinstance(payment, dict) or not isinstance(payment.get("plugin"), str):
            continue
        base = ("regies", index, "payment")
        provider = providers.get(payment["plugin"])
        if provider is None:
            out.append(error((*base, "plugin"),
                             _unknown("plugin de paiement", payment["plugin"], set(providers))))
            continue
        settings = payment.get("settings", {})
        if not isinstance(settings, dict):
            continue
        try:
            provider.settings_schema.model_validate(settings)
        except ValidationError as exc:
            for item in exc.errors(include_url=False):
                path = (*base, "settings", *_data_path(settings, item["loc"]))
                message = _french_message(item, path) if item["type"] != "extra_forbidden" else (
                    f"clé inconnue « {path[-1]} » pour le plugin {payment['plugin']} ; clés possibles : "
                    + ", ".join(sorted(provider.settings_schema.model_fields)))
                out.append(error(path, f"[{payment['plugin']}] {message}"))
    out += _immediate_payment_errors(data, providers, error)
    return out


def _immediate_payment_errors(data: dict, providers: dict, error) -> list[ConfigError]:
    """What is paid immediately (adhesion ``payment: immediate``, ``booking.prepayment``) needs
    a régie paid online; prepaid bookings are billed on bookings, never on attendance (they
    would be billed twice)."""
    online = set()
    for _, regie in _items(data, "regies"):
        payment = regie.get("payment") if isinstance(regie.get("payment"), dict) else {}
        provider = providers.get(payment.get("plugin"))
        if provider is not None and provider.accepts_online_payment:
            online.add(regie.get("code"))
    out = []
    for index, service in _items(data, "services"):
        base = ("services", index)
        booking = service.get("booking") if isinstance(service.get("booking"), dict) else {}
        enrolment = service.get("enrolment") if isinstance(service.get("enrolment"), dict) else {}
        adhesion = enrolment.get("adhesion") if isinstance(enrolment.get("adhesion"), dict) else None
        pricing = service.get("pricing") if isinstance(service.get("pricing"), dict) else {}
        regie = service.get("regie")
        if booking.get("prepayment") is not None:
            if pricing.get("basis") == "attended":
                out.append(error((*base, "booking", "prepayment"),
                                 "réservations payées d'avance avec pricing.basis: attended : elles seraient facturées "
                                 "deux fois (choisir basis: booked)"))
            if regie not in online:
                out.append(error((*base, "booking", "prepayment"),
                                 f"réservations payées d'avance : la régie « {regie} » n'a pas de paiement en ligne"))
        if adhesion is not None and adhesion.get("payment", "immediate") == "immediate" and regie not in online:
            out.append(error((*base, "enrolment", "adhesion", "payment"),
                             f"adhésion payée immédiatement : la régie « {regie} » n'a pas de paiement en ligne "
                             "(mettre payment: on_invoice)"))
    return out


def _inline_secret_errors(node, path: Path, error) -> list[ConfigError]:
    if isinstance(node, dict):
        return [e for key, value in node.items() for e in _inline_secret_errors(value, (*path, key), error)]
    if isinstance(node, list):
        return [e for i, value in enumerate(node) for e in _inline_secret_errors(value, (*path, i), error)]
    if isinstance(node, str) and _INLINE_SECRET.search(node):
        return [error(path, "secret écrit en clair : le YAML doit nommer une variable d'environnement "
                            "(par exemple secret_key_env: STRIPE_SECRET_KEY_ALIXAN), jamais la clé elle-même")]
    return []


# --- Checks across files ----------------------------------------------------------------


def _cross_file_errors(communes: list[LoadedCommune]) -> list[ConfigError]:
    out = []
    slugs: dict[str, LoadedCommune] = {}
    domains: dict[str, tuple[LoadedCommune, int]] = {}
    for commune in communes:
        other = slugs.get(commune.config.slug)
        if other:
            out.append(ConfigError(str(commune.path), commune.source_map.line_for(("slug",)), "slug",
                                   f"slug « {commune.config.slug} » déjà utilisé par {other.path}"))
        slugs.setdefault(commune.config.slug, commune)
        for index, domain in enumerate(commune.config.domains):
            if domain in domains and domains[domain][0] is not commune:
                first = domains[domain][0]
                out.append(ConfigError(str(commune.path), commune.source_map.line_for(("domains", index)),
                                       f"domains[{index}]", f"domaine « {domain} » déjà déclaré par {first.path}"))
            domains.setdefault(domain, (commune, index))
    return out
