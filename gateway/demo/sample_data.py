"""Deterministic, realistic sample data for the Yangtze River Delta demo federation.

Demos and tests need data that looks like what a market regulator, a social-security bureau,
an environment bureau and the MIIT actually hold: real division codes, valid credit codes that
join across nodes, heavy-tailed firm sizes, seasonal air pollution. Everything is derived from
``(seed, node, dataset)`` through a stable hash, so a node can be regenerated alone and the same
seed and scale always give byte-identical Parquet files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gateway import credit_code as cc
from gateway.descriptor import ColumnSpec, DatasetDescriptor, dumps, validate
from gateway.errors import InvalidArgument

REGIONAL_NODES = ("shanghai", "jiangsu", "zhejiang", "anhui", "hefei", "wuhu")
NODES = ("miit", *REGIONAL_NODES)
MINISTRY_NODE = "miit"

_PARQUET_COMPRESSION = "zstd"
_PARQUET_LEVEL = 3
_YEAR = 2025

# GB/T 4754-2017 divisions used here, with the English words used in company names.
_INDUSTRIES: dict[str, tuple[str, ...]] = {
    "C17": ("Textile", "Silk", "Garment"),
    "C26": ("Chemical", "New Materials", "Fine Chemicals"),
    "C35": ("Precision Machinery", "Special Equipment", "Intelligent Equipment"),
    "C36": ("Auto Parts", "Automotive", "New Energy Vehicle"),
    "C38": ("Electric", "Power Equipment", "New Energy Technology"),
    "C39": ("Electronics", "Microelectronics", "Semiconductor", "Optoelectronics"),
    "F51": ("Trading", "Import & Export", "Supply Chain"),
    "G54": ("Logistics", "Transportation", "Freight"),
    "I64": ("Internet Technology", "Digital Technology", "Network Technology"),
    "I65": ("Software", "Information Technology", "Data Technology"),
    "K70": ("Real Estate Development", "Property", "Real Estate"),
    "M73": ("Biotechnology", "Technology Development", "Scientific Instruments"),
}
INDUSTRY_CODES = tuple(_INDUSTRIES)  # the registry's declared categories
# Certified high-tech shares by industry: mostly industry, a little size, so that the
# demo's classifier (industry one-hot, size, revenue) has something to learn beyond the
# majority class (with shares of 0.05-0.5 it learned only "not high-tech").
_HIGH_TECH_P = {
    "C17": 0.03, "C26": 0.3, "C35": 0.5, "C36": 0.35, "C38": 0.55, "C39": 0.8,
    "F51": 0.02, "G54": 0.01, "I64": 0.65, "I65": 0.75, "K70": 0.0, "M73": 0.85,
}  # fmt: skip
# Revenue per employee (10k CNY, median): trade and real estate turn over more per head.
_PRODUCTIVITY = {
    "C17": 45.0, "C26": 150.0, "C35": 80.0, "C36": 120.0, "C38": 100.0, "C39": 110.0,
    "F51": 300.0, "G54": 60.0, "I64": 90.0, "I65": 70.0, "K70": 400.0, "M73": 60.0,
}  # fmt: skip
_SYLLABLES = (
    "Hua", "Xin", "Tai", "Long", "Feng", "Sheng", "Da", "Jin", "Hong", "Heng", "Rui", "Kang",
    "Yuan", "Tian", "Ming", "Cheng", "Guang", "Hai", "Bo", "Chuang", "Zhong", "Yi", "Jia", "Fu",
    "Xing", "Wei", "Tong", "Li", "An", "De", "Rong", "Kai", "Yu", "Ding", "Hui", "Chang",
)  # fmt: skip
_INSURANCE_TYPES = ("pension", "medical", "unemployment", "work_injury", "maternity")
_INSURANCE_P = (0.97, 0.99, 0.75, 0.7, 0.6)


@dataclass(frozen=True)
class _Region:
    label: str  # English name used in titles and departments
    divisions: tuple[tuple[str, str, float], ...]  # (division code, city, weight)
    industry_weights: dict[str, float]
    registry_rows: int
    insurance_rows: int
    median_wage: float  # CNY per month
    pm25_mean: float  # annual mean, µg/m³
    stations: tuple[tuple[str, str], ...]  # (station id, city)
    market_dept: str
    hrss_dept: str
    env_dept: str


def _weights(spec: str) -> dict[str, float]:
    """'C39:3 I65:1.5' -> a weight for every industry (unlisted ones get a small default)."""
    given = {code: float(w) for code, w in (item.split(":") for item in spec.split())}
    if set(given) - set(INDUSTRY_CODES):
        raise ValueError(f"unknown industry in {spec!r}")
    return {code: given.get(code, 0.2) for code in INDUSTRY_CODES}


def _pairs(spec: str) -> tuple[tuple[str, str], ...]:
    """'1141A:Shanghai 1142A:Shanghai' -> ((id, city), ...)."""
    return tuple((a, b) for a, b in (item.split(":") for item in spec.split()))


def _divisions(spec: str) -> tuple[tuple[str, str, float], ...]:
    """'320100:Nanjing:25 ...' -> ((division code, city, weight), ...)."""
    return tuple((d, c, float(w)) for d, c, w in (item.split(":") for item in spec.split()))


_REGIONS: dict[str, _Region] = {
    "shanghai": _Region(
        label="Shanghai",
        divisions=_divisions(
            "310101:Shanghai:8 310104:Shanghai:9 310105:Shanghai:6 310106:Shanghai:7 "
            "310107:Shanghai:7 310109:Shanghai:6 310110:Shanghai:8 310112:Shanghai:16 "
            "310115:Shanghai:33"
        ),
        industry_weights=_weights(
            "I65:3 I64:2 M73:2 F51:3 K70:1.5 C39:1.5 C36:0.8 C26:0.6 G54:1.2 C35:0.6 C38:0.6"
        ),
        registry_rows=5000,
        insurance_rows=20000,
        median_wage=10500.0,
        pm25_mean=28.0,
        stations=_pairs("1141A:Shanghai 1142A:Shanghai 1144A:Shanghai 1147A:Shanghai"),
        market_dept="Shanghai Administration for Market Regulation",
        hrss_dept="Shanghai Municipal Human Resources and Social Security Bureau",
        env_dept="Shanghai Municipal Bureau of Ecology and Environment",
    ),
    "jiangsu": _Region(
        label="Jiangsu",
        divisions=_divisions(
            "320100:Nanjing:25 320200:Wuxi:17 320400:Changzhou:13 320500:Suzhou:30 "
            "320600:Nantong:15"
        ),
        industry_weights=_weights(
            "C38:2.5 C39:2.5 C35:2.2 C26:1.5 C17:1.2 C36:1 F51:1.8 I65:1.2 G54:0.8 K70:0.7 "
            "M73:0.8 I64:0.5"
        ),
        registry_rows=5000,
        insurance_rows=20000,
        median_wage=8200.0,
        pm25_mean=32.0,
        stations=_pairs("1151A:Nanjing 1166A:Suzhou 1177A:Wuxi 1189A:Nantong"),
        market_dept="Jiangsu Administration for Market Regulation",
        hrss_dept="Jiangsu Provincial Human Resources and Social Security Department",
        env_dept="Jiangsu Provincial Department of Ecology and Environment",
    ),
    "zhejiang": _Region(
        label="Zhejiang",
        divisions=_divisions(
            "330100:Hangzhou:33 330200:Ningbo:25 330300:Wenzhou:15 330400:Jiaxing:13 "
            "330600:Shaoxing:14"
        ),
        industry_weights=_weights(
            "C17:2.5 I64:2.5 C38:1.8 F51:2.5 C35:1.5 C39:1.2 I65:1.5 C26:1 C36:0.8 G54:0.8 "
            "K70:0.8 M73:0.6"
        ),
        registry_rows=5000,
        insurance_rows=20000,
        median_wage=8500.0,
        pm25_mean=25.0,
        stations=_pairs("1223A:Hangzhou 1236A:Ningbo 1251A:Wenzhou"),
        market_dept="Zhejiang Administration for Market Regulation",
        hrss_dept="Zhejiang Provincial Human Resources and Social Security Department",
        env_dept="Zhejiang Provincial Department of Ecology and Environment",
    ),
    "anhui": _Region(
        label="Anhui",
        divisions=_divisions(
            "340300:Bengbu:22 340500:Ma'anshan:20 340800:Anqing:20 341100:Chuzhou:22 "
            "341800:Xuancheng:16"
        ),
        industry_weights=_weights(
            "C26:2 C38:1.8 C36:1.5 C35:1.2 C17:0.8 F51:1.5 G54:1 K70:1 C39:0.8 I65:0.4 "
            "I64:0.3 M73:0.3"
        ),
        registry_rows=2000,
        insurance_rows=8000,
        median_wage=6500.0,
        pm25_mean=35.0,
        stations=_pairs("1281A:Bengbu 1290A:Ma'anshan 1301A:Anqing"),
        market_dept="Anhui Administration for Market Regulation",
        hrss_dept="Anhui Provincial Human Resources and Social Security Department",
        env_dept="Anhui Provincial Department of Ecology and Environment",
    ),
    "hefei": _Region(
        label="Hefei",
        divisions=_divisions(
            "340100:Hefei:30 340102:Hefei:15 340103:Hefei:15 340104:Hefei:20 340111:Hefei:20"
        ),
        industry_weights=_weights(
            "C39:3 C36:2.2 I65:1.8 M73:1.8 C38:1.5 I64:0.8 F51:1.2 C35:0.8 K70:0.8 G54:0.6 C26:0.4"
        ),
        registry_rows=2000,
        insurance_rows=8000,
        median_wage=7800.0,
        pm25_mean=34.0,
        stations=_pairs("1270A:Hefei 1271A:Hefei 1276A:Hefei"),
        market_dept="Hefei Administration for Market Regulation",
        hrss_dept="Hefei Municipal Human Resources and Social Security Bureau",
        env_dept="Hefei Municipal Bureau of Ecology and Environment",
    ),
    "wuhu": _Region(
        label="Wuhu",
        divisions=_divisions("340200:Wuhu:40 340202:Wuhu:30 340207:Wuhu:30"),
        industry_weights=_weights(
            "C36:3 C38:1.6 C35:1.5 C26:0.8 C39:0.8 F51:1 G54:1 K70:0.7 I65:0.4 M73:0.3 C17:0.3"
        ),
        registry_rows=2000,
        insurance_rows=8000,
        median_wage=6800.0,
        pm25_mean=33.0,
        stations=_pairs("1284A:Wuhu 1285A:Wuhu"),
        market_dept="Wuhu Administration for Market Regulation",
        hrss_dept="Wuhu Municipal Human Resources and Social Security Bureau",
        env_dept="Wuhu Municipal Bureau of Ecology and Environment",
    ),
}

# Enterprises MIIT holds outside the federation (so overlap is partial in both directions).
_OUTSIDE = _Region(
    label="other provinces",
    divisions=_divisions(
        "110000:Beijing:10 110105:Beijing:10 110108:Beijing:15 440300:Shenzhen:20 "
        "440305:Shenzhen:10 440106:Guangzhou:10 510100:Chengdu:8 420100:Wuhan:9 370200:Qingdao:8"
    ),
    industry_weights=_weights("C39:2.5 I65:2 I64:2 C38:1.5 C36:1.2 C35:1.2 M73:1"),
    registry_rows=0,
    insurance_rows=0,
    median_wage=0.0,
    pm25_mean=0.0,
    stations=(),
    market_dept="",
    hrss_dept="",
    env_dept="",
)
_MIIT_SAMPLE = 0.30  # share of the regional registries MIIT also holds
_MIIT_OUTSIDE = 0.10  # share of MIIT rows that no regional node holds
_MIIT_SECTION_WEIGHT = {"C": 1.3, "I": 1.2, "M": 1.0, "F": 0.5, "G": 0.4, "K": 0.2}


def _rng(seed: int, node: str, dataset: str) -> np.random.Generator:
    """A generator keyed by a stable hash (``hash()`` is salted per process)."""
    digest = hashlib.sha256(f"fedgate-sample:{seed}:{node}:{dataset}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def _rows(base: int, scale: float) -> int:
    return max(1, round(base * scale))


# ---------------------------------------------------------------------------------------------
# Credit codes, vectorised: one (n, 18) byte matrix instead of 30k Python string builds.

_ORG_LUT = np.zeros(256, dtype=np.int64)
_USCC_LUT = np.zeros(256, dtype=np.int64)
for _i, _ch in enumerate(cc.ORG_CHARSET):
    _ORG_LUT[ord(_ch)] = _i
for _i, _ch in enumerate(cc.CHARSET):
    _USCC_LUT[ord(_ch)] = _i
_CHARSET_BYTES = np.frombuffer(cc.CHARSET.encode(), dtype=np.uint8)
_ORG_CHECK_BYTES = np.frombuffer(b"0123456789X0", dtype=np.uint8)  # c9 in 1..11; 10 -> X, 11 -> 0


def _serials(rng: np.random.Generator, new_style: np.ndarray) -> np.ndarray:
    """8-char organisation code bodies: legacy 8-digit codes, or post-2015 'MA' + 6 chars."""
    n = len(new_style)
    legacy = rng.integers(0, 10, size=(n, 8), dtype=np.uint8) + ord("0")
    modern = _CHARSET_BYTES[rng.integers(0, len(cc.CHARSET), size=(n, 8))]
    modern[:, 0] = ord("M")
    modern[:, 1] = ord("A")
    return np.where(new_style[:, None], modern, legacy)


def _credit_codes(
    rng: np.random.Generator, divisions: np.ndarray, new_style: np.ndarray
) -> list[str]:
    """Unique, valid 18-char codes '91' + division + organisation code + check."""
    n = len(divisions)
    div_bytes = np.frombuffer("".join(divisions.tolist()).encode(), dtype=np.uint8).reshape(n, 6)
    serial = _serials(rng, new_style)
    while True:
        org = serial.astype(np.int64)
        c9 = 11 - (_ORG_LUT[org] @ np.array(cc.ORG_WEIGHTS)) % 11
        mat = np.empty((n, 18), dtype=np.uint8)
        mat[:, 0] = ord("9")
        mat[:, 1] = ord("1")
        mat[:, 2:8] = div_bytes
        mat[:, 8:16] = serial
        mat[:, 16] = _ORG_CHECK_BYTES[c9]
        c18 = (31 - (_USCC_LUT[mat[:, :17]] @ np.array(cc.USCC_WEIGHTS)) % 31) % 31
        mat[:, 17] = _CHARSET_BYTES[c18]
        codes = np.ascontiguousarray(mat).view("S18").ravel()
        _, first = np.unique(codes, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            return [c.decode("ascii") for c in codes.tolist()]
        serial[dup] = _serials(rng, new_style[dup])


# ---------------------------------------------------------------------------------------------
# Enterprise registry (kept in memory: social insurance and MIIT are derived from it).


@dataclass
class _Registry:
    credit_code: list[str]
    enterprise_name: list[str]
    industry_code: np.ndarray
    city: np.ndarray
    division_code: np.ndarray
    registered_capital: np.ndarray
    employees: np.ndarray
    revenue: np.ndarray  # complete; nulls are applied only when writing
    founding_year: np.ndarray
    high_tech: np.ndarray
    capital_null: np.ndarray
    revenue_null: np.ndarray


def _pick(
    rng: np.random.Generator, options: Sequence[str], weights: Sequence[float], n: int
) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return np.asarray(options)[rng.choice(len(options), size=n, p=p / p.sum())]


def _names(
    rng: np.random.Generator, prefix: np.ndarray, industry: np.ndarray, big: np.ndarray
) -> list[str]:
    """'Suzhou Huaxin Precision Machinery Co., Ltd.'-style names, unique within the node."""
    n = len(industry)
    syl = rng.integers(0, len(_SYLLABLES), size=(n, 2))
    word_pick = rng.random(n)
    taken: set[str] = set()
    names: list[str] = []
    for i in range(n):
        words = _INDUSTRIES[industry[i]]
        word = words[int(word_pick[i] * len(words))]
        suffix = "Group Co., Ltd." if big[i] else "Co., Ltd."
        brand = _SYLLABLES[syl[i, 0]] + _SYLLABLES[syl[i, 1]].lower()
        name = f"{prefix[i]} {brand} {word} {suffix}"
        while name in taken:  # rare: a third syllable makes it unique
            brand += _SYLLABLES[int(rng.integers(len(_SYLLABLES)))].lower()
            name = f"{prefix[i]} {brand} {word} {suffix}"
        taken.add(name)
        names.append(name)
    return names


def _make_registry(rng: np.random.Generator, region: _Region, n: int) -> _Registry:
    div_codes, cities, div_w = zip(*region.divisions, strict=True)
    div_idx = rng.choice(len(div_codes), size=n, p=np.array(div_w) / sum(div_w))
    division = np.asarray(div_codes)[div_idx]
    city = np.asarray(cities)[div_idx]
    industry = _pick(rng, INDUSTRY_CODES, [region.industry_weights[c] for c in INDUSTRY_CODES], n)

    # Recent founding years dominate (the registry keeps growing); nothing before 1980.
    founding = np.where(
        rng.random(n) < 0.8,
        _YEAR - np.floor(rng.exponential(9.0, n)),
        rng.integers(1980, _YEAR + 1, n),
    )
    founding = np.clip(founding, 1980, _YEAR).astype(np.int64)

    # One latent "size" drives employees, capital and revenue, so they correlate. Student-t
    # rather than normal: firm sizes have a heavier tail than a lognormal.
    size = rng.standard_t(12, n) + np.clip((_YEAR - founding) / 30.0, 0, 1.5) * 0.6
    employees = np.exp(np.log(12.0) + 1.35 * size + rng.normal(0, 0.35, n))
    employees = np.clip(np.rint(employees), 1, 100_000).astype(np.int64)
    capital = np.exp(np.log(300.0) + 1.1 * size + rng.normal(0, 0.9, n))
    capital = np.round(np.clip(capital, 1.0, 1_000_000.0), 2)
    productivity = np.array([_PRODUCTIVITY[c] for c in industry]) * np.exp(rng.normal(0, 0.6, n))
    revenue = np.round(np.clip(employees * productivity, 0.0, 10_000_000.0), 2)

    p_tech = np.array([_HIGH_TECH_P[c] for c in industry]) * np.where(employees >= 50, 1.15, 0.9)
    high_tech = rng.random(n) < p_tech

    names = _names(rng, city, industry, employees >= 2000)
    codes = _credit_codes(rng, division, founding >= 2016)
    return _Registry(
        credit_code=codes,
        enterprise_name=names,
        industry_code=industry,
        city=city,
        division_code=division,
        registered_capital=capital,
        employees=employees,
        revenue=revenue,
        founding_year=founding,
        high_tech=high_tech,
        capital_null=rng.random(n) < 0.01,
        revenue_null=rng.random(n) < 0.012,
    )


def _registry(seed: int, node: str, scale: float) -> _Registry:
    region = _REGIONS[node]
    rng = _rng(seed, node, "enterprise_registry")
    return _make_registry(rng, region, _rows(region.registry_rows, scale))


# ---------------------------------------------------------------------------------------------
# Dataset builders: each returns (table, descriptor); the schema comes from the column specs.

_Built = tuple[pa.Table, DatasetDescriptor]


def _col(
    name: str,
    type_: str,
    description: str,
    *,
    level: str = "",
    lower: float | None = None,
    upper: float | None = None,
    categories: tuple[str, ...] = (),
) -> ColumnSpec:
    return ColumnSpec(name, type_, level, description, lower, upper, categories=categories)


_ARROW_TYPES = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
}


def _table(columns: Sequence[ColumnSpec], data: Mapping[str, object]) -> pa.Table:
    schema = pa.schema([pa.field(c.name, _ARROW_TYPES[c.type]) for c in columns])
    arrays = []
    for field in schema:
        value = data[field.name]
        if isinstance(value, pa.Array):
            arrays.append(value.cast(field.type))
        else:
            arrays.append(pa.array(value, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _descriptor(
    name: str,
    title: str,
    description: str,
    department: str,
    level: str,
    frequency: str,
    columns: Sequence[ColumnSpec],
) -> DatasetDescriptor:
    return DatasetDescriptor(
        name=name,
        title=title,
        description=description,
        department=department,
        level=level,
        update_frequency=frequency,
        path=f"{name}.parquet",
        format="parquet",
        columns=tuple(columns),
    )


_REGISTRY_COLUMNS = (
    _col("credit_code", "string", "Unified Social Credit Code (GB 32100)", level="L2"),
    _col("enterprise_name", "string", "Registered name of the enterprise", level="L2"),
    _col(  # declared: a model may take it one-hot (docs/training.md)
        "industry_code",
        "string",
        "GB/T 4754-2017 section letter + 2-digit division",
        categories=INDUSTRY_CODES,
    ),
    _col("industry_section", "string", "GB/T 4754-2017 section letter"),
    _col("city", "string", "City of registration"),
    _col("division_code", "string", "GB/T 2260 administrative division code"),
    _col("registered_capital", "float64", "Registered capital, 10k CNY", lower=0, upper=1e6),
    _col("employees", "int64", "Number of employees", lower=0, upper=100_000),
    _col("revenue", "float64", "Annual operating revenue, 10k CNY", lower=0, upper=1e7),
    _col("founding_year", "int64", "Year of establishment", lower=1980, upper=_YEAR),
    _col("high_tech", "bool", "Certified high-tech enterprise (高新技术企业)"),
)


def _enterprise_registry(reg: _Registry, region: _Region) -> _Built:
    masked = {
        "registered_capital": pa.array(reg.registered_capital, mask=reg.capital_null),
        "revenue": pa.array(reg.revenue, mask=reg.revenue_null),
    }
    data = {
        "credit_code": reg.credit_code,
        "enterprise_name": reg.enterprise_name,
        "industry_code": reg.industry_code,
        "industry_section": np.array([c[0] for c in reg.industry_code.tolist()]),
        "city": reg.city,
        "division_code": reg.division_code,
        "employees": reg.employees,
        "founding_year": reg.founding_year,
        "high_tech": reg.high_tech,
        **masked,
    }
    desc = _descriptor(
        "enterprise_registry",
        f"{region.label} enterprise registry",
        f"Registered enterprises (企业登记信息) in {region.label} with credit code, industry, "
        "size and finances.",
        region.market_dept,
        "L2",
        "daily",
        _REGISTRY_COLUMNS,
    )
    return _table(_REGISTRY_COLUMNS, data), desc


_INSURANCE_COLUMNS = (
    _col("person_id", "string", "Pseudonymous person token (16 hex characters)", level="L4"),
    _col("gender", "string", "F or M"),
    _col("birth_year", "int64", "Year of birth", lower=1950, upper=2010),
    _col("city", "string", "City of the insured employer"),
    _col("division_code", "string", "GB/T 2260 administrative division code"),
    _col("employer_credit_code", "string", "Employer's Unified Social Credit Code"),
    _col("insurance_type", "string", "pension, medical, unemployment, work_injury or maternity"),
    _col("monthly_wage", "float64", "Monthly wage, CNY", lower=0, upper=200_000),
    _col("contribution_months", "int64", "Cumulative months contributed", lower=0, upper=600),
)


def _social_insurance(rng: np.random.Generator, reg: _Registry, region: _Region, n: int) -> _Built:
    # Everyone has at least one enrolment, so n people always cover n rows; cut at exactly n.
    people = n
    enrolled = rng.random((people, len(_INSURANCE_TYPES))) < np.array(_INSURANCE_P)
    enrolled[:, 0] |= ~enrolled.any(axis=1)  # everyone has at least pension
    person_idx, type_idx = np.nonzero(enrolled)
    person_idx, type_idx = person_idx[:n], type_idx[:n]

    # Bigger employers insure more people. Weight by headcount**0.7, not headcount: the
    # registry is a sample, and one 80k-employee firm should not hold half of a city's people.
    emp = reg.employees.astype(float) ** 0.7
    employer = rng.choice(len(emp), size=people, p=emp / emp.sum())
    hexes = rng.bytes(8 * people).hex()
    person_id = np.array([hexes[i : i + 16] for i in range(0, 16 * people, 16)])
    gender = np.where(rng.random(people) < 0.46, "F", "M")
    birth = np.clip(np.rint(rng.normal(1985, 10, people)), 1960, 2007).astype(np.int64)
    age = _YEAR - birth
    wage_factor = np.exp(rng.normal(0, 0.5, people) + 0.012 * np.clip(age - 22, 0, 25))
    wage = np.round(np.clip(region.median_wage * 0.8 * wage_factor, 2000, 200_000), 2)
    months = np.clip(np.rint((age - 20) * 12 * rng.uniform(0.4, 1.0, people)), 1, 540)

    codes = np.asarray(reg.credit_code)
    data = {
        "person_id": person_id[person_idx],
        "gender": gender[person_idx],
        "birth_year": birth[person_idx],
        "city": reg.city[employer][person_idx],
        "division_code": reg.division_code[employer][person_idx],
        "employer_credit_code": codes[employer][person_idx],
        "insurance_type": np.asarray(_INSURANCE_TYPES)[type_idx],
        "monthly_wage": wage[person_idx],
        "contribution_months": months.astype(np.int64)[person_idx],
    }
    desc = _descriptor(
        "social_insurance",
        f"{region.label} social insurance enrolments",
        f"Person-level social insurance (社会保险) enrolments in {region.label}, one row per "
        "person and insurance type, with wage and contribution history.",
        region.hrss_dept,
        "L3",
        "monthly",
        _INSURANCE_COLUMNS,
    )
    return _table(_INSURANCE_COLUMNS, data), desc


_AIR_COLUMNS = (
    _col("station_id", "string", "National monitoring station code"),
    _col("city", "string", "City of the station"),
    _col("date", "date", "Calendar day"),
    _col("pm25", "float64", "Daily mean PM2.5, µg/m³", lower=0, upper=500),
    _col("pm10", "float64", "Daily mean PM10, µg/m³", lower=0, upper=600),
    _col("no2", "float64", "Daily mean NO2, µg/m³", lower=0, upper=940),
    _col("o3", "float64", "Daily max 8-hour O3, µg/m³", lower=0, upper=800),
    _col("aqi", "int64", "Air Quality Index (HJ 633-2012)", lower=0, upper=500),
)
_IAQI = np.array([0, 50, 100, 150, 200, 300, 400, 500], dtype=float)
_BREAKPOINTS = {
    "pm25": np.array([0, 35, 75, 115, 150, 250, 350, 500], dtype=float),
    "pm10": np.array([0, 50, 150, 250, 350, 420, 500, 600], dtype=float),
    "no2": np.array([0, 40, 80, 180, 280, 565, 750, 940], dtype=float),
    "o3": np.array([0, 100, 160, 215, 265, 800], dtype=float),
}


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], phi: float) -> np.ndarray:
    """Persistent day-to-day noise (weather systems last several days), unit variance."""
    eps = rng.normal(0, math.sqrt(1 - phi * phi), shape)
    out = np.empty(shape)
    out[..., 0] = rng.normal(0, 1, shape[:-1])
    for t in range(1, shape[-1]):
        out[..., t] = phi * out[..., t - 1] + eps[..., t]
    return out


def _air_quality(rng: np.random.Generator, region: _Region, scale: float) -> _Built:
    days = 365 if scale >= 1 else max(30, round(365 * scale))
    stations = region.stations
    k = len(stations)
    doy = np.arange(days, dtype=float)
    winter = np.cos(2 * np.pi * (doy - 10) / 365)  # +1 mid-January, -1 mid-July
    summer = np.cos(2 * np.pi * (doy - 165) / 365)  # +1 mid-June
    regional = _ar1(rng, (days,), 0.7)  # shared by every station of the node
    local = _ar1(rng, (k, days), 0.5)
    offset = rng.normal(0, 0.08, (k, 1))
    shape = (k, days)

    pm25: np.ndarray = region.pm25_mean * np.exp(
        0.4 * winter + 0.35 * regional + 0.15 * local + offset - 0.1
    )
    pm10 = pm25 * np.exp(rng.normal(np.log(1.65), 0.12, shape))
    no2: np.ndarray = 32.0 * np.exp(0.25 * winter + 0.2 * regional + 0.2 * local + offset - 0.04)
    o3: np.ndarray = 95.0 * np.exp(0.35 * summer - 0.1 * regional + 0.15 * local.clip(-2, 2) - 0.05)
    pm25 = np.round(np.clip(pm25, 1, 500), 1)
    pm10 = np.round(np.clip(np.maximum(pm10, pm25), 1, 600), 1)
    no2 = np.round(np.clip(no2, 1, 940), 1)
    o3 = np.round(np.clip(o3, 1, 800), 1)
    iaqi = [
        np.interp(values, _BREAKPOINTS[name], _IAQI[: len(_BREAKPOINTS[name])])
        for name, values in (("pm25", pm25), ("pm10", pm10), ("no2", no2), ("o3", o3))
    ]
    aqi = np.ceil(np.max(iaqi, axis=0) - 1e-9).astype(np.int64)

    epoch_day = (dt.date(_YEAR, 1, 1) - dt.date(1970, 1, 1)).days
    ids, cities = zip(*stations, strict=True)
    data = {
        "station_id": np.repeat(ids, days),
        "city": np.repeat(cities, days),
        "date": pa.array(np.tile(np.arange(days, dtype=np.int32) + epoch_day, k), pa.int32()),
        "pm25": pm25.ravel(),
        "pm10": pm10.ravel(),
        "no2": no2.ravel(),
        "o3": o3.ravel(),
        "aqi": aqi.ravel(),
    }
    desc = _descriptor(
        "air_quality",
        f"{region.label} daily air quality",
        f"Daily air quality (空气质量日报) at national monitoring stations in {region.label} "
        f"for {_YEAR}, open data.",
        region.env_dept,
        "L1",
        "daily",
        _AIR_COLUMNS,
    )
    return _table(_AIR_COLUMNS, data), desc


_MIIT_COLUMNS = (
    _col("credit_code", "string", "Unified Social Credit Code (GB 32100)", level="L3"),
    _col("industry_code", "string", "GB/T 4754-2017 section letter + 2-digit division"),
    _col("industry_section", "string", "GB/T 4754-2017 section letter"),
    _col("specialized_sme", "bool", "Specialised and sophisticated SME (专精特新)"),
    _col("rnd_expense", "float64", "Annual R&D expense, 10k CNY", lower=0, upper=1e6),
    _col("patents", "int64", "Valid invention and utility patents", lower=0, upper=10_000),
    _col("export_value", "float64", "Annual export value, 10k CNY", lower=0, upper=1e7),
)


def _industry_enterprises(seed: int, scale: float) -> _Built:
    rng = _rng(seed, MINISTRY_NODE, "industry_enterprises")
    regs = [_registry(seed, node, scale) for node in REGIONAL_NODES]
    total = sum(len(r.credit_code) for r in regs)
    sampled = max(1, round(_MIIT_SAMPLE * total))
    outside_n = max(1, round(sampled * _MIIT_OUTSIDE / (1 - _MIIT_OUTSIDE)))
    outside = _make_registry(rng, _OUTSIDE, outside_n)
    regs.append(outside)

    def cat(attr: str) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(r, attr)) for r in regs])

    industry = cat("industry_code")
    # MIIT's remit is manufacturing and IT: weight the sample towards them (Gumbel top-k).
    weight = np.array([_MIIT_SECTION_WEIGHT[c[0]] for c in industry[:total].tolist()])
    keys = rng.exponential(1.0, total) / weight
    chosen = np.sort(np.argsort(keys, kind="stable")[:sampled])
    rows = np.concatenate([chosen, np.arange(total, total + outside_n)])
    rows = rows[rng.permutation(len(rows))]

    n = len(rows)
    industry = industry[rows]
    employees = cat("employees")[rows]
    revenue = cat("revenue")[rows]
    high_tech = cat("high_tech")[rows]
    section = np.array([c[0] for c in industry.tolist()])
    core = np.isin(section, ["C", "I", "M"])

    ratio = np.where(high_tech, 0.045, 0.012) * np.where(core, 1.0, 0.2)
    rnd = np.round(np.clip(revenue * ratio * np.exp(rng.normal(0, 0.5, n)), 0, 1e6), 2)
    lam = 0.8 * rnd**0.6 * np.where(high_tech, 1.5, 1.0) * np.where(core, 1.0, 0.1)
    patents = np.clip(rng.poisson(lam), 0, 10_000).astype(np.int64)
    p_zero = np.select([section == "F", np.isin(section, ["G", "K"])], [0.3, 0.9], 0.55)
    exporter = rng.random(n) >= p_zero
    export = np.where(exporter, revenue * rng.beta(2, 5, n), 0.0)
    export = np.round(np.clip(export, 0, 1e7), 2)
    sme = (employees < 1000) & (revenue < 40_000)
    p_sme = np.where(core & sme, np.where(high_tech, 0.3, 0.05), 0.0)
    specialized = rng.random(n) < p_sme

    data = {
        "credit_code": cat("credit_code")[rows],
        "industry_code": industry,
        "industry_section": section,
        "specialized_sme": specialized,
        "rnd_expense": rnd,
        "patents": patents,
        "export_value": export,
    }
    desc = _descriptor(
        "industry_enterprises",
        "MIIT industrial and IT enterprise register",
        "Ministry-held records of industrial and information-technology enterprises, including "
        "the specialised-and-sophisticated SME (专精特新) designation, R&D, patents and exports.",
        "Ministry of Industry and Information Technology",
        "L3",
        "quarterly",
        _MIIT_COLUMNS,
    )
    return _table(_MIIT_COLUMNS, data), desc


# ---------------------------------------------------------------------------------------------


def _write(
    out: Path, table: pa.Table, desc: DatasetDescriptor, progress: Callable[[str], None] | None
) -> Path:
    validate(desc)
    data_path = out / desc.path
    pq.write_table(
        table,
        data_path,
        compression=_PARQUET_COMPRESSION,
        compression_level=_PARQUET_LEVEL,
    )
    if progress:
        progress(f"wrote {data_path} ({table.num_rows} rows)")
    toml_path = out / f"{desc.name}.toml"
    toml_path.write_text(dumps(desc), encoding="utf-8")
    if progress:
        progress(f"wrote {toml_path}")
    return toml_path


def generate(
    out_dir: Path,
    *,
    seed: int = 20261125,
    scale: float = 1.0,
    nodes: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[Path]]:
    """Write ``out_dir/<node>/<dataset>.{parquet,toml}``; return each node's descriptor paths.

    Row counts are the base counts times ``scale`` (at least 1 row). Air quality keeps all of
    2025 at ``scale >= 1`` and shortens to ``max(30, 365 * scale)`` days below it.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise InvalidArgument(f"scale must be a number, got {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise InvalidArgument(f"scale must be a positive number, got {scale!r}")
    if isinstance(nodes, str):
        nodes = [nodes]
    wanted = list(dict.fromkeys(NODES if nodes is None else nodes))
    unknown = [n for n in wanted if n not in NODES]
    if unknown:
        raise InvalidArgument(
            f"unknown node id(s) {', '.join(map(repr, unknown))}; known: {', '.join(NODES)}"
        )
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {}
    for node in wanted:
        node_dir = out_dir / node
        node_dir.mkdir(parents=True, exist_ok=True)
        if node == MINISTRY_NODE:
            written[node] = [_write(node_dir, *_industry_enterprises(seed, scale), progress)]
            continue
        region = _REGIONS[node]
        reg = _registry(seed, node, scale)
        si_rng = _rng(seed, node, "social_insurance")
        si_rows = _rows(region.insurance_rows, scale)
        air_rng = _rng(seed, node, "air_quality")
        written[node] = [
            _write(node_dir, *_enterprise_registry(reg, region), progress),
            _write(node_dir, *_social_insurance(si_rng, reg, region, si_rows), progress),
            _write(node_dir, *_air_quality(air_rng, region, scale), progress),
        ]
    return written
