"""The original API's ThreadPoolManager example, with its imports pointed at threadloom.

The original used `time` without importing it; that import is the only addition.
"""

import time

from threadloom import ResourceMonitor, TaskPriority, ThreadPoolManager

# Create a resource monitor
resource_monitor = ResourceMonitor()
resource_monitor.start()

# Create a thread pool manager
pool = ThreadPoolManager(
    min_workers=2,
    max_workers=10,
    resource_monitor=resource_monitor
)

# Start the pool
pool.start()

# Define a task function
def example_task(task_id, sleep_time):
    print(f"Task {task_id} started")
    time.sleep(sleep_time)
    print(f"Task {task_id} completed")
    return f"Result from task {task_id}"

# Submit tasks with different priorities
task_id = pool.submit(
    example_task, 
    1, 
    sleep_time=2.0,
    priority=TaskPriority.HIGH,
    max_retries=2
)

# Wait for a specific task to complete
pool.wait_for_task(task_id)

# Get the task result
result = pool.get_task_result(task_id)
print(f"Task result: {result}")

# Get pool metrics
metrics = pool.get_metrics()
print(f"Thread pool metrics: {metrics}")

# Stop the pool when done
pool.stop()
