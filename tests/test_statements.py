"""What ``depends_on`` reads from statements, and what it keeps: a statement's table whatever
its quoting and spacing, and no dependency of a function that is gone."""

import gc

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cache_tools import cache_aside, dependencies
from cache_tools.dependencies import written_table
from testproject.shop.models import Category

_IDENTIFIERS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,40}", fullmatch=True)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    table=_IDENTIFIERS,
    verb=st.sampled_from(
        [
            "INSERT INTO",
            "insert or ignore into",
            "UPDATE",
            "DELETE FROM",
            "REPLACE INTO",
            "TRUNCATE",
        ]
    ),
    quote=st.sampled_from(['"', "`", "", "["]),
    space=st.sampled_from([" ", "\n  ", "\t"]),
    rest=st.sampled_from(
        [' ("a") VALUES (%s)', " SET a = 1", " WHERE id = 1", "", "(a) VALUES (1)"]
    ),
)
def test_the_written_table_is_read_from_any_quoting_and_spacing(table, verb, quote, space, rest):
    closing = "]" if quote == "[" else quote
    sql = f"{space}{verb}{space}{quote}{table}{closing}{rest}"
    assert written_table(sql) == table.lower()


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT * FROM "shop_product"',
        "SAVEPOINT s1",
        'WITH x AS (SELECT 1) UPDATE "shop_product" SET a = 1',  # documented: not attributed
        "",
    ],
)
def test_statements_that_write_no_table_they_name_first_give_none(sql):
    assert written_table(sql) is None


def test_a_function_that_is_gone_depends_on_nothing():
    def live():
        gc.collect()
        return len(dependencies._registry.dependents.get(Category, ()))

    before = live()  # what other live functions (or templates) declare

    @cache_aside(timeout=60, depends_on=[Category])
    def transient():
        return 1

    assert live() == before + 1
    del transient
    assert live() == before
