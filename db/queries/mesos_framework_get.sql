SELECT framework_id FROM mesos_frameworks WHERE name = $1
