"""The original API's TaskManager example, imports pointed at threadloom.

The body below is the original's, unchanged (hence ``fmt: off``); it forgot ``import time``.
"""

import time

from threadloom import ResourceMonitor, TaskManager, TaskPriority, ThreadPoolManager

# fmt: off

# Create a resource monitor
resource_monitor = ResourceMonitor()
resource_monitor.start()

# Create a thread pool
thread_pool = ThreadPoolManager(
    resource_monitor=resource_monitor
)
thread_pool.start()

# Create a task manager
task_manager = TaskManager(
    thread_pool=thread_pool,
    resource_monitor=resource_monitor
)
task_manager.start()

# Define task functions
def task_1():
    print("Executing task 1")
    time.sleep(1)
    return "Task 1 result"

def task_2():
    print("Executing task 2")
    time.sleep(2)
    return "Task 2 result"

# Register tasks
task1_id = task_manager.register_task(
    name="Task 1",
    func=task_1,
    priority=TaskPriority.HIGH
)

task2_id = task_manager.register_task(
    name="Task 2",
    func=task_2,
    dependencies=[task1_id],  # Task 2 depends on Task 1
    priority=TaskPriority.NORMAL
)

# Execute tasks with dependencies
execution_ids = task_manager.execute_tasks([task2_id], wait=True)

# Get task history
history = task_manager.get_task_history()
print(f"Task execution history: {len(history)} entries")

# Stop the task manager when done
task_manager.stop()
