"""GPU helpers behind carbonwrap.sensors.nvml: the binding's process and utilisation answers made safe
(`queries`), and what /proc says about who holds a device (`procfs`). Neither imports pynvml."""
