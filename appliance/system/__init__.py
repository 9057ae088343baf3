from appliance.system.controllers import SystemController

__all__ = ["SystemController"]
