"""The inference services of one open broker, wired once.

The broker builds the shared parts (contracts, wallet, auth, ledger, provider transport, task
group) and calls :meth:`InferenceServices.build`; unit tests call it with fakes. Each service
receives its collaborators in its constructor and nothing else::

    ServiceDirectory(contracts)                              services, cached
    LocalFeeBook(observer.billed)                            fees counted locally
    VerificationService(transport, directory, policies, fees, background)
    AccountKeeper(contracts, wallet, ledger, auth, directory)
      OnboardingService(contracts, keeper) · SettlementService(contracts, keeper)
      AutoFundingService(contracts, keeper, transport, fees, background)
    RequestCore(transport, directory, verification, fees, policies, background, funding, budgets, observer)
      ChatRequests(core, auth) · ImageRequests(core) · AudioRequests(core) · FeeEstimator(core)
    DiscoveryService(contracts, directory, transport, status_api)
    RouterService(chat, images, audio, discovery, directory, onboarding)   provider routers
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
from .budgets import BudgetBook
from .discovery import DiscoveryService, ServiceDirectory
from .funding import AutoFundingService
from .images import ImageRequests
from .onboarding import OnboardingService
from .requests import ChatRequests, FeeEstimator, RequestCore
from .router import RouterService
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
    estimates: FeeEstimator
    onboarding: OnboardingService
    funding: AutoFundingService
    settlement: SettlementService
    routing: RouterService

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
        budgets: BudgetBook | None = None,
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
            observer: the broker's counters and hooks (verification outcomes, top-ups, settlement waits).
            budgets: the broker's spend budgets (default: a new book).
        """
        directory = directory or ServiceDirectory(contracts)
        fees = LocalFeeBook(on_add=observer.billed if observer is not None else None)
        verification = VerificationService(transport, directory, policies, fees, background)
        keeper = AccountKeeper(contracts, wallet, ledger, auth, directory)
        funding = AutoFundingService(contracts, keeper, transport, fees, background, observer)
        core = RequestCore(
            transport=transport,
            directory=directory,
            verification=verification,
            fees=fees,
            policies=policies,
            background=background,
            observer=observer,
            funding=funding,
            budgets=budgets or BudgetBook(),
        )
        discovery = DiscoveryService(contracts, directory, transport, status_api=status_api)
        chat = ChatRequests(core, auth)
        images = ImageRequests(core)
        audio = AudioRequests(core)
        onboarding = OnboardingService(contracts, keeper)
        return cls(
            auth=auth,
            directory=directory,
            fees=fees,
            discovery=discovery,
            verification=verification,
            chat=chat,
            images=images,
            audio=audio,
            estimates=FeeEstimator(core),
            onboarding=onboarding,
            funding=funding,
            settlement=SettlementService(contracts, keeper, observer),
            routing=RouterService(
                chat=chat,
                images=images,
                audio=audio,
                discovery=discovery,
                directory=directory,
                onboarding=onboarding,
                clock=transport.now,
            ),
        )
