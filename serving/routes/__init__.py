"""The service's HTTP routes, one ``APIRouter`` per protocol; ``serving.app`` assembles them."""

from serving.routes.admin import admin_router
from serving.routes.kserve import v1_router, v2_router
from serving.routes.native import native_router
from serving.routes.reckit import reckit_router

__all__ = ["admin_router", "native_router", "reckit_router", "v1_router", "v2_router"]
