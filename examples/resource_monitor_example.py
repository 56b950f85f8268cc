from threadloom import ResourceMonitor

# Create and start a resource monitor
monitor = ResourceMonitor(
    check_interval=5.0,
    cpu_threshold=80.0,
    memory_threshold=80.0
)

# Define a callback for resource alerts
def resource_alert(resource_type, current_value, threshold):
    print(f"Alert: {resource_type} usage at {current_value:.1f}% (threshold: {threshold}%)")

# Register the callback
monitor.add_callback(resource_alert)

# Start monitoring
monitor.start()

# Get current resource usage
usage = monitor.get_current_usage()
print(f"CPU: {usage['cpu']:.1f}%, Memory: {usage['memory']:.1f}%")

# Calculate optimal thread count
optimal_threads = monitor.calculate_optimal_thread_count()
print(f"Optimal thread count: {optimal_threads}")

# Stop monitoring when done
monitor.stop()
