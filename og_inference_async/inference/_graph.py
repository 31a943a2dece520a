"""The inference services of one open broker, wired once.

The broker builds the shared parts (contracts, wallet, auth, ledger, provider transport, task
group) and calls :meth:`InferenceServices.build`; unit tests call it with fakes. Each service
receives its collaborators in its constructor and nothing else::

    ServiceDirectory(contracts)                              services, cached
    LocalFeeBook()                                           fees counted locally
    VerificationService(transport, directory, policies, fees, background)
    RequestCore(transport, directory, verification, fees, policies, background)
      ChatRequests(core, auth) · ImageRequests(core) · AudioRequests(core)
    DiscoveryService(contracts, directory, transport, status_api)
    AccountKeeper(contracts, wallet, ledger, auth, directory)
      OnboardingService(contracts, keeper) · SettlementService(contracts, keeper)
      AutoFundingService(contracts, keeper, transport, fees, background)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._observe import Observer
from .._runtime import Background, Wallet
from .._transport import ProviderTransport
from ._accounts import AccountKeeper
from ._common import RequestPolicies
from ._fees import LocalFeeBook
from .audio import AudioRequests
from .auth import AuthManager
from .discovery import DiscoveryService, ServiceDirectory
from .funding import AutoFundingService
from .images import ImageRequests
from .onboarding import OnboardingService
from .requests import ChatRequests, RequestCore
from .settlement import SettlementService
from .verification import VerificationService

if TYPE_CHECKING:
    from .._chain import ChainReader
    from ..ledger import LedgerAPI

__all__ = ["InferenceServices"]


@dataclass(frozen=True)
class InferenceServices:
    """Every inference service of one open broker (what the ``InferenceAPI`` facade delegates to)."""

    auth: AuthManager
    directory: ServiceDirectory
    fees: LocalFeeBook
    discovery: DiscoveryService
    verification: VerificationService
    chat: ChatRequests
    images: ImageRequests
    audio: AudioRequests
    onboarding: OnboardingService
    funding: AutoFundingService
    settlement: SettlementService

    @classmethod
    def build(
        cls,
        *,
        contracts: ChainReader,
        wallet: Wallet,
        auth: AuthManager,
        ledger: LedgerAPI,
        transport: ProviderTransport,
        policies: RequestPolicies,
        background: Background,
        status_api: str | None = None,
        directory: ServiceDirectory | None = None,
        observer: Observer | None = None,
    ) -> InferenceServices:
        """Wire the services from the broker's shared parts.

        Args:
            contracts: the chain's contracts.
            wallet: the user's wallet.
            auth: session headers, account reads, API keys.
            ledger: the ledger namespace (top-ups and refunds go through its checks).
            transport: every request to a provider.
            policies: the verification and retry policies (shared with the facade).
            background: the broker's task group.
            status_api: the network's status API, when it has one.
            directory: the service cache (default: a new one reading ``contracts``).
            observer: the broker's counters (verification outcomes).
        """
        directory = directory or ServiceDirectory(contracts)
        fees = LocalFeeBook()
        verification = VerificationService(transport, directory, policies, fees, background)
        core = RequestCore(
            transport=transport,
            directory=directory,
            verification=verification,
            fees=fees,
            policies=policies,
            background=background,
            observer=observer,
        )
        keeper = AccountKeeper(contracts, wallet, ledger, auth, directory)
        return cls(
            auth=auth,
            directory=directory,
            fees=fees,
            discovery=DiscoveryService(contracts, directory, transport, status_api=status_api),
            verification=verification,
            chat=ChatRequests(core, auth),
            images=ImageRequests(core),
            audio=AudioRequests(core),
            onboarding=OnboardingService(contracts, keeper),
            funding=AutoFundingService(contracts, keeper, transport, fees, background),
            settlement=SettlementService(contracts, keeper),
        )
